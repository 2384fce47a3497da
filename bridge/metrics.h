/*
 * metrics.h - the fleet and connection figures of /metrics and /readyz
 * beyond the counters of server.h (metrics.c).
 */
#ifndef PANKHA_METRICS_H
#define PANKHA_METRICS_H

#include "util.h"

int			metrics_init(void);
void		metrics_write(struct sbuf *b);
void		metrics_readyz(struct sbuf *b);
void		metrics_note_close(bool agent, int code);
void		metrics_note_ping(bool agent);
void		metrics_command_acked(double seconds);
void		metrics_http_answered(const char *method, const char *pattern, double seconds);

#endif							/* PANKHA_METRICS_H */
