/*
 * fuzz_frame.c
 *	  libFuzzer target for the frame rules and the payload codec.
 *
 *	  Any input: compare the number fast path with strtod on short numeric
 *	  inputs, parse it as JSON the way ingest does (simdjson through
 *	  json_fast.cpp; cJSON stands in for PostgreSQL's parser, which ingest
 *	  falls back to), check that both parsers give the rules the same
 *	  verdict where both take the input, run the rules, and for a valid
 *	  frame give it sparse slots, encode it, decode it again and check every
 *	  value survived (status words with and without a dictionary code).
 *	  The raw bytes are also fed to the payload decoder (either format),
 *	  which must refuse or accept them without reading out of bounds.
 *
 *	  clang++ -fsanitize=fuzzer,address,undefined -std=c++17 -fno-exceptions \
 *		  -c ../src/json_fast.cpp; clang -fsanitize=fuzzer,address,undefined \
 *		  -I../src fuzz_frame.c pk_cjson.c ../src/validate.c json_fast.o \
 *		  -lcjson -lsimdjson -lstdc++ -lm
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_fast.h"
#include "pk_cjson.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok, const char *what)
{
	if (!ok)
	{
		fprintf(stderr, "round trip lost %s\n", what);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static PkFrame frame;
	PkDecoded	decoded;
	PkError		err;
	PkJson		json;
	cJSON	   *doc;
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

	/* the two parsers agree on what the rules make of an input both take */
	{
		int			nodes = pk_fast_parse((const char *) data, size);
		PkJson		fast;
		bool		fast_ok = false;

		doc = cJSON_ParseWithLength((const char *) data, size);
		if (nodes > 0)
		{
			pk_json_init(&fast, realloc);
			fast.nodes = malloc(sizeof(PkJsonNode) * nodes);
			fast.capacity = nodes;
			fast_ok = pk_fast_emit(&fast) && !fast.failed && fast.count > 0;
		}
		if (doc && fast_ok && pk_json_from_cjson(doc, &json))
		{
			PkError		err2;
			bool		v1 = pk_frame_from_json(&fast, 0, "fuzz-agent", &frame, &err);
			bool		v2 = pk_frame_from_json(&json, 0, "fuzz-agent", &frame, &err2);

			check(v1 == v2 && (v1 || (strcmp(err.sqlstate, err2.sqlstate) == 0 &&
									  strcmp(err.message, err2.message) == 0)),
				  "the same verdict from both parsers");
		}
		if (fast_ok)
		{
			/* what ingest goes on with; the cJSON tree is done */
			if (doc)
			{
				free(json.nodes);
				cJSON_Delete(doc);
				doc = NULL;
			}
			json = fast;
		}
		else
		{
			if (nodes > 0)
				free(fast.nodes);
			if (doc == NULL)
				return 0;
			json.nodes = NULL;
			if (!pk_json_from_cjson(doc, &json))
			{
				free(json.nodes);
				cJSON_Delete(doc);
				return 0;
			}
		}
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
	if (doc)
		cJSON_Delete(doc);		/* json's strings pointed into it */
	return 0;
}
