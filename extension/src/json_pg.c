/*-------------------------------------------------------------------------
 *
 * json_pg.c
 *	  PostgreSQL's JSON parser feeding the plain-C tree of validate.c.
 *
 *	  Ingest parses with simdjson (json_fast.cpp) and hands this parser
 *	  whatever simdjson does not take, so that the outcome and its wording
 *	  are PostgreSQL's.  The same file is compiled with FRONTEND into the
 *	  fuzzer (extension/fuzz/fuzz_frame.c), against libpgcommon's copy of
 *	  the parser, so the two parsers ingest uses are compared there.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "common/jsonapi.h"

#include "json_pg.h"

static void
on_object_start(void *state)
{
	pk_json_begin((PkJson *) state, PK_JSON_OBJECT);
}

static void
on_array_start(void *state)
{
	pk_json_begin((PkJson *) state, PK_JSON_ARRAY);
}

static void
on_end(void *state)
{
	pk_json_end((PkJson *) state);
}

static void
on_field(void *state, char *fname, bool isnull)
{
	pk_json_key((PkJson *) state, fname, strlen(fname));
}

static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	PkJson	   *json = (PkJson *) state;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			pk_json_scalar(json, PK_JSON_STRING, token, strlen(token), 0);
			break;
		case JSON_TOKEN_NUMBER:
			/* the lexer checked the syntax; huge values become inf */
			pk_json_scalar(json, PK_JSON_NUMBER, NULL, 0, pk_json_number(token));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			pk_json_scalar(json, PK_JSON_BOOL, NULL, 0, type == JSON_TOKEN_TRUE);
			break;
		default:
			pk_json_scalar(json, PK_JSON_NULL, NULL, 0, 0);
			break;
	}
}

/*
 * How deeply brackets nest, outside strings.  The parser recurses per
 * level and would raise a stack-depth error, which must not take a whole
 * batch down, so too deep a document is refused before parsing.
 */
static bool
nesting_ok(const char *text, int len)
{
	int			depth = 0;
	int			opening = 0;
	bool		in_string = false;

	/* cheap common case: too few brackets to nest too deeply at all */
	for (const char *p = text; (p = memchr(p, '{', text + len - p)) != NULL; p++)
		opening++;
	for (const char *p = text; (p = memchr(p, '[', text + len - p)) != NULL; p++)
		opening++;
	if (opening <= PK_JSON_MAX_DEPTH)
		return true;

	for (int i = 0; i < len; i++)
	{
		char		c = text[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > PK_JSON_MAX_DEPTH)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

bool
pk_pg_parse(char *text, int len, int encoding, PkJson *json, PkError *err,
			const char *what)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType result;

	if (!nesting_ok(text, len))
		return pk_fail(err, "54000", PK_PATH(what), "nested too deeply",
					   "Objects and arrays may nest at most %d levels deep.",
					   PK_JSON_MAX_DEPTH);

	memset(&sem, 0, sizeof(sem));
	sem.semstate = json;
	sem.object_start = on_object_start;
	sem.object_end = on_end;
	sem.array_start = on_array_start;
	sem.array_end = on_end;
	sem.object_field_start = on_field;
	sem.scalar = on_scalar;

	/* the lexer is bounded by the length: no terminator needed */
	lex = makeJsonLexContextCstringLen(text, len, encoding, true);
	result = pg_parse_json(lex, &sem);
#ifdef FRONTEND
	/* the server frees the lexer with its memory context; a program here */
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
#endif
	if (result != JSON_SUCCESS)
#ifndef FRONTEND
		return pk_fail(err, "22P02", PK_PATH(what), "not valid JSON",
					   "%s", json_errdetail(result, lex));
#else
		/* libpgcommon 15 leaves json_errdetail() out of programs */
		return pk_fail(err, "22P02", PK_PATH(what), "not valid JSON",
					   "PostgreSQL's JSON parser error %d.", (int) result);
#endif
	if (json->failed || json->count == 0)
		return pk_fail(err, "54000", PK_PATH(what), "nested too deeply",
					   "Objects and arrays may nest at most %d levels deep.",
					   PK_JSON_MAX_DEPTH);
	return true;
}
