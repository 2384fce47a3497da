/*
 * fuzz_frame.c
 *	  libFuzzer target for the frame rules and the payload codec.
 *
 *	  Any input: compare the number fast path with strtod on short numeric
 *	  inputs, parse it as JSON with both parsers ingest uses (simdjson
 *	  through json_fast.cpp, and PostgreSQL's own through json_pg.c and
 *	  libpgcommon, which ingest falls back to), check that wherever simdjson
 *	  takes an input PostgreSQL's parser takes it too and builds the same
 *	  tree, and that the rules give both trees the same verdict; run the
 *	  rules on the tree ingest would use, and for a valid frame give it
 *	  sparse slots, encode it, decode it again and check every value
 *	  survived (status words with and without a dictionary code).  The raw
 *	  bytes are also fed to the payload decoder (either format), which must
 *	  refuse or accept them without reading out of bounds.
 *
 *	  extension/tests/test_validate builds it: json_fast.cpp with clang++,
 *	  json_pg.c with -DFRONTEND against the server headers, linked with
 *	  validate.c, -lsimdjson and libpgcommon/libpgport.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_fe.h"
#include "mb/pg_wchar.h"

#include "json_fast.h"
#include "json_pg.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libpgcommon's parser hands every member name and scalar to the callbacks
 * as a palloc'd copy, which the server frees with the memory context; the
 * tree keeps pointing at them until the input is done, and PostgreSQL 15
 * gives a program no context to free them with, so allocations made inside
 * the parser are not checked for leaks here (json_pg.c frees the lexer).
 */
const char *
__lsan_default_suppressions(void)
{
	/* parse_scalar is inlined into its callers in libpgcommon's build */
	return "leak:pg_parse_json\nleak:parse_object_field\nleak:parse_array_element\n"
		"leak:parse_scalar\n";
}

static void
check(bool ok, const char *what)
{
	if (!ok)
	{
		fprintf(stderr, "fuzz_frame: %s failed\n", what);
		abort();
	}
}

static bool
same_bytes(const char *a, int alen, const char *b, int blen)
{
	return alen == blen && (alen == 0 || (a && b && memcmp(a, b, alen) == 0));
}

/* Node for node: types, links, member names, strings and numbers. */
static bool
same_tree(const PkJson *a, const PkJson *b)
{
	if (a->count != b->count)
		return false;
	for (int i = 0; i < a->count; i++)
	{
		const PkJsonNode *x = &a->nodes[i];
		const PkJsonNode *y = &b->nodes[i];

		if (x->type != y->type || x->next != y->next || x->first != y->first ||
			x->last != y->last || x->count != y->count ||
			(x->key == NULL) != (y->key == NULL) ||
			!same_bytes(x->key, x->key_len, y->key, y->key_len))
			return false;
		if (x->type == PK_JSON_STRING && !same_bytes(x->str, x->len, y->str, y->len))
			return false;
		if ((x->type == PK_JSON_NUMBER || x->type == PK_JSON_BOOL) &&
			!(x->number == y->number || (isnan(x->number) && isnan(y->number))))
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static PkFrame frame;
	PkDecoded	decoded;
	PkError		err;
	PkJson		json;
	char	   *keep_text = NULL;
	unsigned char *payload;
	size_t		len;

	(void) pk_decode_payload(data, size, &decoded);

	/* short inputs of number characters: the fast path must equal strtod */
	if (size < 40)
	{
		char		token[40];

		memcpy(token, data, size);
		token[size] = '\0';
		if (strlen(token) == size && strspn(token, "-0123456789.eE+") == size)
		{
			double		a = pk_json_number(token);
			double		b = strtod(token, NULL);

			check(a == b || (isnan(a) && isnan(b)), "a number conversion");
		}
	}

	/* the two parsers agree wherever simdjson takes an input */
	{
		int			nodes = pk_fast_parse((const char *) data, size);
		PkJson		fast;
		bool		fast_ok = false;
		bool		pg_ok;
		char	   *text = malloc(size ? size : 1);

		if (nodes > 0)
		{
			pk_json_init(&fast, realloc);
			fast.nodes = malloc(sizeof(PkJsonNode) * nodes);
			fast.capacity = nodes;
			fast_ok = pk_fast_emit(&fast) && !fast.failed && fast.count > 0;
		}
		/* PostgreSQL's parser is handed a copy: its tokens are its own */
		check(text != NULL, "memory");
		memcpy(text, data, size);
		pk_json_init(&json, realloc);
		pg_ok = pk_pg_parse(text, (int) size, PG_UTF8, &json, &err, "frame");
		if (fast_ok)
		{
			PkError		err2;
			bool		v1,
						v2;

			check(pg_ok, "PostgreSQL's parser taking what simdjson took");
			check(same_tree(&fast, &json), "the same tree from both parsers");
			v1 = pk_frame_from_json(&fast, 0, "fuzz-agent", &frame, &err);
			v2 = pk_frame_from_json(&json, 0, "fuzz-agent", &frame, &err2);
			check(v1 == v2 && (v1 || (strcmp(err.sqlstate, err2.sqlstate) == 0 &&
									  strcmp(err.message, err2.message) == 0 &&
									  strcmp(err.detail, err2.detail) == 0)),
				  "the same verdict from both parsers");
			/* what ingest goes on with */
			free(json.nodes);
			json = fast;
		}
		else
		{
			if (nodes > 0)
				free(fast.nodes);
			if (!pg_ok)
			{
				check(strcmp(err.sqlstate, "22P02") == 0 || strcmp(err.sqlstate, "54000") == 0,
					  "a parse error's SQLSTATE");
				free(json.nodes);
				free(text);
				return 0;
			}
		}
		keep_text = text;	/* json's strings may point into it */
	}
	if (pk_frame_from_json(&json, 0, "fuzz-agent", &frame, &err))
	{
		/* sparse slots in no particular order; some status words without a code */
		for (int i = 0; i < frame.nsensors; i++)
			frame.sensors[i].slot = (int) ((frame.nsensors - 1 - i) * 127 + size % 7) % PK_MAX_SLOTS;
		for (int i = 0; i < frame.nfans; i++)
		{
			frame.fans[i].slot = (i * 3 + (int) (size % 5)) % 255;
			frame.fans[i].status = frame.fans[i].status_word && i % 3 ? i % PK_STATUS_INLINE : -1;
		}
		len = pk_payload_size(&frame);
		payload = malloc(len);
		check(payload && len > 0 && pk_encode_payload(&frame, payload, len) == len, "the encoding");
		check(pk_decode_payload(payload, len, &decoded), "the header");
		check(decoded.has_seq == frame.has_seq && (!frame.has_seq || decoded.seq == frame.seq), "seq");
		check(decoded.nsensors == frame.nsensors && decoded.nfans == frame.nfans, "the counts");
		for (int i = 0; i < frame.nsensors; i++)
		{
			const PkDecodedSensor *d = NULL;

			for (int k = 0; k < decoded.nsensors; k++)
				if (decoded.sensors[k].slot == frame.sensors[i].slot)
					d = &decoded.sensors[k];
			check(d && fabs(d->temperature - frame.sensors[i].temperature) <= 0.005 + 1e-9,
				  "a temperature");
		}
		for (int k = 1; k < decoded.nsensors; k++)
			check(decoded.sensors[k - 1].slot < decoded.sensors[k].slot, "the slot order");
		for (int i = 0; i < frame.nfans; i++)
		{
			const PkFan *f = &frame.fans[i];
			const PkDecodedFan *d = NULL;

			for (int k = 0; k < decoded.nfans; k++)
				if (decoded.fans[k].slot == f->slot)
					d = &decoded.fans[k];
			check(d != NULL, "a fan");
			check(fabs(d->rpm - f->rpm) <= 0.5 && d->has_speed == f->has_speed &&
				  (!d->has_speed || fabs(d->speed - f->speed) <= 0.005 + 1e-9) &&
				  d->has_target == f->has_target &&
				  (!d->has_target || fabs(d->target - f->target) <= 0.005 + 1e-9), "fan values");
			if (f->status_word == NULL)
				check(d->status == -1 && d->word == NULL, "an absent status");
			else if (f->status >= 0)
				check(d->status == f->status && d->word == NULL, "a status code");
			else
				check(d->status == -1 && d->word_len == f->status_len &&
					  memcmp(d->word, f->status_word, f->status_len) == 0, "a carried status word");
		}
		check(decoded.health.present == frame.health.present, "the health fields");
		/* and their values: hundredths, whole seconds of uptime, or floats */
		for (int h = 0; h < PK_H_NFIELDS; h++)
		{
			double		v = frame.health.value[h];
			double		tol = h == PK_H_UPTIME ? 0.5 : fmax(0.005 + 1e-9, fabs(v) * 1e-6);

			if (frame.health.present & (1u << h))
				check(fabs(decoded.health.value[h] - v) <= tol, "a health value");
		}
		free(payload);
	}
	free(json.nodes);
	free(keep_text);
	return 0;
}
