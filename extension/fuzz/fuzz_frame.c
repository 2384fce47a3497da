/*
 * fuzz_frame.c
 *	  libFuzzer target for the frame rules and the payload codec.
 *
 *	  Any input: compare the number fast path with strtod on short numeric
 *	  inputs, parse it as JSON (cJSON), run the rules, and for a valid
 *	  frame encode it, decode it again and check every value survived.  The
 *	  raw bytes are also fed to the payload decoder, which must refuse or
 *	  accept them without reading out of bounds.
 *
 *	  clang -fsanitize=fuzzer,address,undefined -I../src fuzz_frame.c \
 *		  pk_cjson.c ../src/validate.c -lcjson -lm
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	doc = cJSON_ParseWithLength((const char *) data, size);
	if (doc == NULL)
		return 0;
	if (pk_json_from_cjson(doc, &json) &&
		pk_frame_from_json(&json, 0, "fuzz-agent", &frame, &err))
	{
		for (int i = 0; i < frame.nsensors; i++)
			frame.sensors[i].slot = frame.nsensors - 1 - i;
		for (int i = 0; i < frame.nfans; i++)
		{
			frame.fans[i].slot = i;
			frame.fans[i].status = frame.fans[i].status_word ? i % 255 : -1;
		}
		len = pk_payload_size(&frame);
		payload = malloc(len);
		check(payload && pk_encode_payload(&frame, payload, len) == len, "the encoding");
		check(pk_decode_payload(payload, len, &decoded), "the header");
		check(decoded.has_seq == frame.has_seq && (!frame.has_seq || decoded.seq == frame.seq), "seq");
		for (int i = 0; i < frame.nsensors; i++)
		{
			double		t;

			check(pk_decoded_sensor(&decoded, frame.sensors[i].slot, &t) &&
				  fabs(t - frame.sensors[i].temperature) <= 0.005 + 1e-9, "a temperature");
		}
		for (int i = 0; i < frame.nfans; i++)
		{
			double		rpm,
						speed,
						target;
			bool		has_speed,
						has_target;
			int			status;

			check(pk_decoded_fan(&decoded, i, &rpm, &speed, &has_speed, &target,
								 &has_target, &status), "a fan");
			check(fabs(rpm - frame.fans[i].rpm) <= 0.5 && has_speed == frame.fans[i].has_speed &&
				  (!has_speed || fabs(speed - frame.fans[i].speed) <= 0.005 + 1e-9) &&
				  has_target == frame.fans[i].has_target && status == frame.fans[i].status,
				  "fan values");
		}
		check(decoded.health.present == frame.health.present, "the health fields");
		free(payload);
	}
	free(json.nodes);
	cJSON_Delete(doc);
	return 0;
}
