/*-------------------------------------------------------------------------
 *
 * json_fast.cpp
 *	  simdjson (Debian's libsimdjson) behind a small C interface, feeding
 *	  the plain-C tree of validate.c.
 *
 * PostgreSQL's JSON lexer was the largest single cost of ingest (it
 * copies every string and field name a byte at a time); simdjson parses
 * a frame in a fraction of that.  It is only a faster way to the same
 * PkJson: the rules that judge a frame stay in validate.c.  Anything
 * simdjson refuses (bad JSON, an integer beyond 64 bits, nesting beyond
 * its limit) makes the caller parse the frame again with PostgreSQL's
 * parser, which then accepts it or gives its usual precise error, so
 * what ingest accepts and how it words errors do not depend on this file.
 *
 * Two steps, so that no allocation can fail (and longjmp) inside C++:
 * pk_fast_parse() parses into a per-process parser and says how many
 * nodes the tree needs; the caller allocates them; pk_fast_emit() walks
 * the document into the tree.  Strings point into the parser, valid until
 * the next pk_fast_parse().  Built without exceptions.
 *
 *-------------------------------------------------------------------------
 */
#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>
#include <cstring>
#include <string.h>

extern "C"
{
#include "json_fast.h"
}

static simdjson::dom::parser *parser = nullptr;
static simdjson::dom::element root;

/*
 * Whether the last document may hold a NUL in a string or member name
 * (from \u0000, or a raw NUL byte): only then are its strings searched.
 */
static bool may_have_nul = false;

/*
 * Emit the parser events of the subtree at e; false for a string with a
 * NUL (from \u0000), which PostgreSQL's parser refuses, so that the caller
 * hands the frame to it and the answer is the same.
 */
static bool
emit(simdjson::dom::element e, PkJson *json)
{
	switch (e.type())
	{
		case simdjson::dom::element_type::ARRAY:
			{
				simdjson::dom::array array = e.get_array().value_unsafe();

				pk_json_begin(json, PK_JSON_ARRAY);
				for (simdjson::dom::element child : array)
					if (!emit(child, json))
						return false;
				pk_json_end(json);
				break;
			}
		case simdjson::dom::element_type::OBJECT:
			{
			simdjson::dom::object object = e.get_object().value_unsafe();

			pk_json_begin(json, PK_JSON_OBJECT);
			for (simdjson::dom::key_value_pair field : object)
			{
				if (may_have_nul && memchr(field.key.data(), '\0', field.key.size()))
					return false;
				pk_json_key(json, field.key.data(), (int) field.key.size());
				if (!emit(field.value, json))
					return false;
			}
			pk_json_end(json);
			break;
			}
		case simdjson::dom::element_type::STRING:
			{
				std::string_view s = e.get_string().value_unsafe();

				if (may_have_nul && memchr(s.data(), '\0', s.size()))
					return false;
				pk_json_scalar(json, PK_JSON_STRING, s.data(), (int) s.size(), 0);
				break;
			}
		case simdjson::dom::element_type::INT64:
			pk_json_scalar(json, PK_JSON_NUMBER, nullptr, 0, (double) e.get_int64().value_unsafe());
			break;
		case simdjson::dom::element_type::UINT64:
			pk_json_scalar(json, PK_JSON_NUMBER, nullptr, 0, (double) e.get_uint64().value_unsafe());
			break;
		case simdjson::dom::element_type::DOUBLE:
			pk_json_scalar(json, PK_JSON_NUMBER, nullptr, 0, e.get_double().value_unsafe());
			break;
		case simdjson::dom::element_type::BOOL:
			pk_json_scalar(json, PK_JSON_BOOL, nullptr, 0, e.get_bool().value_unsafe() ? 1 : 0);
			break;
		default:
			pk_json_scalar(json, PK_JSON_NULL, nullptr, 0, 0);
			break;
	}
	return true;
}

/*
 * Does text hold \u0000 (perhaps after an escaped backslash: then the
 * strings are searched for nothing)?  Backslashes are rare in frames, so
 * looking at each is cheaper than a substring search.
 */
static bool
has_nul_escape(const char *text, size_t len)
{
	const char *end = text + len;

	for (const char *p = text; (p = (const char *) memchr(p, '\\', (size_t) (end - p))) != nullptr; p++)
		if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
			return true;
	return false;
}

/*
 * Parse text (UTF-8); room for the tree nodes it needs (at least as many),
 * or -1 when simdjson does not take it (the caller then uses PostgreSQL's
 * parser).  The bound is the length of simdjson's tape, which its first
 * word holds: every value takes at least one word of it, so no walk of
 * the document is needed to count them.
 */
int
pk_fast_parse(const char *text, size_t len)
{
	if (parser == nullptr)
	{
		parser = new (std::nothrow) simdjson::dom::parser();
		if (parser == nullptr)
			return -1;
	}
	/* frames are small: keep the parser's buffers for the next one */
	if (parser->parse(text, len, true).get(root) != simdjson::SUCCESS)
		return -1;
	may_have_nul = memchr(text, '\0', len) != nullptr || has_nul_escape(text, len);
	{
		uint64_t	words = (parser->doc.tape[0] & simdjson::internal::JSON_VALUE_MASK) + 1;

		return words > (uint64_t) INT32_MAX / 2 ? -1 : (int) words;
	}
}

/*
 * Walk the document of the last successful pk_fast_parse() into json,
 * whose nodes must have room for what it returned; false when the
 * document must go to PostgreSQL's parser after all.
 */
bool
pk_fast_emit(PkJson *json)
{
	return emit(root, json);
}
