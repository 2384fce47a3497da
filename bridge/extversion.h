/*
 * extversion.h - the extension versions this bridge works with
 * (extversion.c).
 */
#ifndef PANKHA_EXTVERSION_H
#define PANKHA_EXTVERSION_H
#include <stdbool.h>

int			extversion_init(void);
bool		extversion_supported(const char *version);
const char *extversion_range(void);

#endif							/* PANKHA_EXTVERSION_H */
