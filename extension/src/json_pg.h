/*-------------------------------------------------------------------------
 *
 * json_pg.h
 *	  PostgreSQL's own JSON parser (common/jsonapi) feeding a PkJson: what
 *	  ingest falls back to when simdjson does not take a text.  Built into
 *	  the extension and, with FRONTEND and libpgcommon, into the fuzzer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PANKHA_JSON_PG_H
#define PANKHA_JSON_PG_H

#include "validate.h"

/*
 * Parse len bytes of text (in the given PostgreSQL encoding) into json,
 * which the caller has pk_json_init()ed; false with err naming the input
 * "what" when it is not JSON (22P02) or nests too deeply (54000).
 */
extern bool pk_pg_parse(char *text, int len, int encoding, PkJson *json,
						PkError *err, const char *what);

#endif							/* PANKHA_JSON_PG_H */
