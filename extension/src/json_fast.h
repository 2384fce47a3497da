/*-------------------------------------------------------------------------
 *
 * json_fast.h
 *	  The C interface of json_fast.cpp: JSON text into a PkJson with
 *	  simdjson.  Plain C, no PostgreSQL dependency (the fuzzer links it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PANKHA_JSON_FAST_H
#define PANKHA_JSON_FAST_H

#include "validate.h"

extern int	pk_fast_parse(const char *text, size_t len);
extern bool pk_fast_emit(PkJson *json);

#endif							/* PANKHA_JSON_FAST_H */
