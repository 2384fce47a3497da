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
 * Build the tree of the last successful pk_fast_parse() into json, whose
 * nodes must have room for what it returned; false when the document must
 * go to PostgreSQL's parser after all (a NUL in a string or member name,
 * nesting deeper than PK_JSON_MAX_DEPTH).
 *
 * The nodes are written in one pass over simdjson's tape (its documented
 * layout: a word per value, the type in the top byte; strings as an offset
 * into the string buffer, where a 32-bit length precedes the bytes; numbers
 * in the word that follows), giving the very tree pk_json_begin/key/
 * scalar/end would build from the same document, without a call per value.
 */
bool
pk_fast_emit(PkJson *json)
{
	const uint64_t *tape = parser->doc.tape.get();
	const uint8_t *strings = parser->doc.string_buf.get();
	uint64_t	end = tape[0] & simdjson::internal::JSON_VALUE_MASK;
	PkJsonNode *nodes = json->nodes;
	int			capacity = json->capacity;
	int			count = 0;
	int			stack[PK_JSON_MAX_DEPTH];
	int			depth = 0;
	bool		want_key = false;	/* in an object, before a member's value */
	const char *key = nullptr;
	int			key_len = 0;

	/* tape[0] and tape[end - 1] are the root words; the value lies between */
	for (uint64_t i = 1; i + 1 < end; i++)
	{
		uint64_t	word = tape[i];
		char		type = (char) (word >> 56);
		uint64_t	payload = word & simdjson::internal::JSON_VALUE_MASK;
		PkJsonNode *node;
		int			index;

		if (type == '}' || type == ']')
		{
			depth--;
			want_key = depth > 0 && nodes[stack[depth - 1]].type == PK_JSON_OBJECT;
			continue;
		}
		if (type == '"')
		{
			uint32_t	len;
			const char *str = (const char *) strings + payload + sizeof(uint32_t);

			memcpy(&len, strings + payload, sizeof(len));
			if (len > (uint32_t) INT32_MAX || (may_have_nul && memchr(str, '\0', len)))
				return false;
			if (want_key)
			{
				key = str;
				key_len = (int) len;
				want_key = false;
				continue;
			}
		}
		if (count == capacity)
			return false;
		index = count++;
		node = &nodes[index];
		node->next = node->first = node->last = -1;
		node->count = 0;
		node->key = key;
		node->key_len = key ? key_len : 0;
		node->str = nullptr;
		node->len = 0;
		node->number = 0;
		key = nullptr;
		if (depth > 0)
		{
			PkJsonNode *parent = &nodes[stack[depth - 1]];

			if (parent->last >= 0)
				nodes[parent->last].next = index;
			else
				parent->first = index;
			parent->last = index;
			parent->count++;
		}
		switch (type)
		{
			case '{':
			case '[':
				if (depth == PK_JSON_MAX_DEPTH)
					return false;
				node->type = type == '{' ? PK_JSON_OBJECT : PK_JSON_ARRAY;
				stack[depth++] = index;
				want_key = type == '{';
				continue;
			case '"':
				{
					uint32_t	len;

					memcpy(&len, strings + payload, sizeof(len));
					node->type = PK_JSON_STRING;
					node->str = (const char *) strings + payload + sizeof(uint32_t);
					node->len = (int) len;
					break;
				}
			case 'l':
				node->type = PK_JSON_NUMBER;
				node->number = (double) (int64_t) tape[++i];
				break;
			case 'u':
				node->type = PK_JSON_NUMBER;
				node->number = (double) tape[++i];
				break;
			case 'd':
				{
					double		d;

					memcpy(&d, &tape[++i], sizeof(d));
					node->type = PK_JSON_NUMBER;
					node->number = d;
					break;
				}
			case 't':
			case 'f':
				node->type = PK_JSON_BOOL;
				node->number = type == 't' ? 1 : 0;
				break;
			default:
				node->type = PK_JSON_NULL;
				break;
		}
		want_key = depth > 0 && nodes[stack[depth - 1]].type == PK_JSON_OBJECT;
	}
	json->count = count;
	return count > 0;
}
