/*
 * validate_test.c
 *	  Unit tests of the frame rules and payload codec, compiled outside the
 *	  server with cJSON as the parser.  Prints TAP.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pk_cjson.h"

static int	tests = 0;
static int	failures = 0;

static void
ok(bool cond, const char *what)
{
	tests++;
	if (!cond)
		failures++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tests, what);
}

static PkFrame frame;

/* Run the rules on JSON text; returns whether the frame is valid. */
static bool
run(const char *text, PkError *err)
{
	cJSON	   *doc = cJSON_Parse(text);
	PkJson		json;
	bool		valid;

	if (doc == NULL)
	{
		snprintf(err->message, sizeof(err->message), "unparsable test input");
		return false;
	}
	valid = pk_json_from_cjson(doc, &json) &&
		pk_frame_from_json(&json, 0, "linux-agent-id", &frame, err);
	/* the tests only look at numbers and lengths after this point */
	free(json.nodes);
	cJSON_Delete(doc);
	return valid;
}

static const char *seed =
"{\"agentId\":\"linux-agent-id\",\"timestamp\":1693958400000,\"seq\":17,"
"\"sensors\":[{\"id\":\"cpu_temp\",\"temperature\":45.2,\"type\":\"cpu\",\"max_temp\":85,\"crit_temp\":95}],"
"\"fans\":[{\"id\":\"cpu_fan\",\"speed\":60,\"rpm\":1200,\"targetSpeed\":60,\"status\":\"ok\"}],"
"\"systemHealth\":{\"cpuUsage\":25.3,\"memoryUsage\":45.2,\"agentUptime\":3600}}";

struct bad_case
{
	const char *json;
	const char *sqlstate;
	const char *message;
};

static const struct bad_case bad[] = {
	{"[1]", "22023", "frame: not a JSON object"},
	{"{\"type\":\"ping\"}", "22023", "type: not \"data\""},
	{"{\"type\":\"data\"}", "22023", "data: missing"},
	{"{\"sensors\":[]}", "22023", "timestamp: missing"},
	{"{\"timestamp\":\"x\"}", "22023", "timestamp: not a number"},
	{"{\"timestamp\":-1}", "22003", "timestamp: out of range"},
	{"{\"timestamp\":1,\"seq\":1.5}", "22023", "seq: not an integer"},
	{"{\"timestamp\":1,\"agentId\":\"other\"}", "22023", "agentId: does not match the agent"},
	{"{\"timestamp\":1,\"sensors\":{}}", "22023", "sensors: not an array"},
	{"{\"timestamp\":1,\"sensors\":[1]}", "22023", "sensors[0]: not an object"},
	{"{\"timestamp\":1,\"sensors\":[{\"temperature\":1}]}", "22023", "sensors[0].id: missing"},
	{"{\"timestamp\":1,\"sensors\":[{\"id\":\"\",\"temperature\":1}]}", "22023", "sensors[0].id: empty"},
	{"{\"timestamp\":1,\"sensors\":[{\"id\":\"a\\u0001\",\"temperature\":1}]}", "22023", "sensors[0].id: contains a control character"},
	{"{\"timestamp\":1,\"sensors\":[{\"id\":\"a\",\"temperature\":250.5}]}", "22003", "sensors[0].temperature: out of range"},
	{"{\"timestamp\":1,\"sensors\":[{\"id\":\"a\",\"temperature\":1e999}]}", "22003", "sensors[0].temperature: not a finite number"},
	{"{\"timestamp\":1,\"sensors\":[{\"id\":\"a\",\"temperature\":1},{\"id\":\"a\",\"temperature\":2}]}", "22023", "sensors[1].id: duplicate id"},
	{"{\"timestamp\":1,\"fans\":[{\"id\":\"f\",\"rpm\":100001}]}", "22003", "fans[0].rpm: out of range"},
	{"{\"timestamp\":1,\"fans\":[{\"id\":\"f\",\"rpm\":1,\"speed\":101}]}", "22003", "fans[0].speed: out of range"},
	{"{\"timestamp\":1,\"fans\":[{\"id\":\"f\",\"rpm\":1,\"status\":5}]}", "22023", "fans[0].status: not a string"},
	{"{\"timestamp\":1,\"systemHealth\":{\"cpuUsage\":101}}", "22003", "systemHealth.cpuUsage: out of range"},
	{"{\"timestamp\":1,\"systemHealth\":{\"load1\":-1}}", "22003", "systemHealth.load1: out of range"},
};

int
main(void)
{
	PkError		err;
	unsigned char buf[4096];
	size_t		len;
	PkDecoded	d;
	bool		in_future;
	char		big[8192];
	bool		all_refused;

	ok(run(seed, &err), "the protocol's example frame is valid");
	ok(frame.nsensors == 1 && frame.nfans == 1 && frame.has_seq && frame.seq == 17 &&
	   frame.timestamp_ms == 1693958400000LL, "its fields are read");
	ok(frame.sensors[0].has_max && frame.sensors[0].max_temp == 85 && frame.sensors[0].kind_len == 3,
	   "sensor limits and type are read");

	snprintf(big, sizeof(big), "{\"type\":\"data\",\"data\":%s}", seed);
	ok(run(big, &err) && frame.nsensors == 1, "the whole data message is accepted too");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		char		what[256];
		bool		valid = run(bad[i].json, &err);

		snprintf(what, sizeof(what), "refused with %s \"%s\"", bad[i].sqlstate, bad[i].message);
		ok(!valid && strcmp(err.sqlstate, bad[i].sqlstate) == 0 &&
		   strcmp(err.message, bad[i].message) == 0, what);
		if (valid || strcmp(err.message, bad[i].message) != 0)
			printf("# got %s \"%s\"\n", err.sqlstate, err.message);
	}

	/* counts */
	{
		int			n = snprintf(big, sizeof(big), "{\"timestamp\":1,\"fans\":[");

		for (int i = 0; i < 65; i++)
			n += snprintf(big + n, sizeof(big) - n, "%s{\"id\":\"f%d\",\"rpm\":1}", i ? "," : "", i);
		snprintf(big + n, sizeof(big) - n, "]}");
		ok(!run(big, &err) && strcmp(err.message, "fans: too many entries") == 0, "65 fans are refused");
	}

	/*
	 * Duplicates among many ids (found through a hash table): the first id
	 * equal to an earlier one is named, with that earlier one in the detail.
	 */
	{
		int			n = snprintf(big, sizeof(big), "{\"timestamp\":1,\"sensors\":[");

		for (int i = 0; i < 200; i++)
			n += snprintf(big + n, sizeof(big) - n, "%s{\"id\":\"s%d\",\"temperature\":1}",
						  i ? "," : "", i == 150 ? 37 : i == 180 ? 12 : i);
		snprintf(big + n, sizeof(big) - n, "],\"fans\":[{\"id\":\"f\",\"rpm\":1},{\"id\":\"f\",\"rpm\":1}]}");
		ok(!run(big, &err) && strcmp(err.message, "sensors[150].id: duplicate id") == 0 &&
		   strcmp(err.detail, "sensors[37] has the same id \"s37\"; ids must be unique within a frame.") == 0,
		   "of 200 sensors, the first repeated id is named with the one it repeats");
		n = snprintf(big, sizeof(big), "{\"timestamp\":1,\"fans\":[");
		for (int i = 0; i < 64; i++)
			n += snprintf(big + n, sizeof(big) - n, "%s{\"id\":\"f%d\",\"rpm\":1}",
						  i ? "," : "", i == 63 ? 0 : i);
		snprintf(big + n, sizeof(big) - n, "]}");
		ok(!run(big, &err) && strcmp(err.message, "fans[63].id: duplicate id") == 0 &&
		   strcmp(err.detail, "fans[0] has the same id \"f0\"; ids must be unique within a frame.") == 0,
		   "a fan repeating the first one is named");
		big[strlen(big) - 3 - strlen("{\"id\":\"f0\",\"rpm\":1}")] = '\0';	/* the last fan and its comma */
		strcat(big, "]}");
		ok(run(big, &err) && frame.nfans == 63, "63 distinct fans are accepted");
	}

	/* a member given twice: the last one counts, null as absent */
	ok(!run("{\"timestamp\":1,\"sensors\":[{\"id\":\"a\",\"temperature\":1,\"temperature\":null}]}", &err) &&
	   strcmp(err.message, "sensors[0].temperature: missing") == 0, "a repeated member: the last one, null, counts");
	ok(run("{\"timestamp\":1,\"fans\":[{\"id\":\"a\",\"rpm\":\"x\",\"rpm\":2,\"status\":null}]}", &err) &&
	   frame.fans[0].rpm == 2 && frame.fans[0].status_word == NULL, "a repeated member: the last one, valid, counts");

	/* time rules */
	ok(run(seed, &err), "seed again");
	ok(pk_check_time(&err, &frame, 1693958400000LL + 1000, 7 * 86400000LL, &in_future) && !in_future,
	   "a frame a second old is on time");
	ok(pk_check_time(&err, &frame, 1693958400000LL - 6 * 60000, 7 * 86400000LL, &in_future) && in_future,
	   "a frame six minutes ahead is flagged");
	ok(!pk_check_time(&err, &frame, 1693958400000LL + 8 * 86400000LL, 7 * 86400000LL, &in_future) &&
	   strcmp(err.sqlstate, "22008") == 0, "a frame older than retention is refused");

	/* codec round trip (run() freed the document the frame's strings were in) */
	frame.fans[0].status_word = "ok";
	frame.fans[0].status_len = 2;
	frame.sensors[0].slot = 3;
	frame.fans[0].slot = 1;
	frame.fans[0].status = 0;
	len = pk_encode_payload(&frame, buf, sizeof(buf));
	ok(len == pk_payload_size(&frame) && len > 0, "the frame encodes");
	ok(pk_decode_payload(buf, len, &d) && d.format == 2, "and decodes");
	ok(d.has_seq && d.seq == 17, "seq survives");
	ok(d.nsensors == 1 && d.sensors[0].slot == 3 && fabs(d.sensors[0].temperature - 45.2) < 1e-9,
	   "the temperature is in its slot and nowhere else");
	ok(d.nfans == 1 && d.fans[0].slot == 1 && d.fans[0].rpm == 1200 && d.fans[0].has_speed &&
	   d.fans[0].speed == 60 && d.fans[0].has_target && d.fans[0].target == 60 &&
	   d.fans[0].status == 0 && d.fans[0].word == NULL,
	   "the fan is in its slot with every value");
	ok(d.health.present == 7 && fabs(d.health.value[PK_H_CPU] - 25.3) < 1e-9 &&
	   d.health.value[PK_H_UPTIME] == 3600, "system health survives");

	all_refused = true;
	for (size_t cut = 0; cut < len; cut++)
		if (pk_decode_payload(buf, cut, &d))
			all_refused = false;
	ok(all_refused, "every truncated payload is refused");
	buf[0] = 3;
	ok(!pk_decode_payload(buf, len, &d), "an unknown payload format is refused");

	/* M10: the size follows the frame, not the highest slot */
	frame.sensors[0].slot = PK_MAX_SLOTS - 1;
	len = pk_encode_payload(&frame, buf, sizeof(buf));
	ok(len > 0 && len < 40 && pk_decode_payload(buf, len, &d) && d.nsensors == 1 &&
	   d.sensors[0].slot == PK_MAX_SLOTS - 1, "a sensor in the highest slot costs what one in slot 0 does");

	/* M9: a word the dictionary lacks is carried (run() freed the document) */
	frame.fans[0].status = -1;
	frame.fans[0].status_word = "ok";
	frame.fans[0].status_len = 2;
	len = pk_encode_payload(&frame, buf, sizeof(buf));
	ok(len > 0 && pk_decode_payload(buf, len, &d) && d.nfans == 1 && d.fans[0].status == -1 &&
	   d.fans[0].word_len == 2 && memcmp(d.fans[0].word, "ok", 2) == 0,
	   "a status word without a code travels in the payload");

	/* payloads written by 0.1.0 (format 1, dense slots) still decode */
	{
		static const unsigned char v1[] = {1, 0x80, 2, 0, 1, 17, 0x00, 0x80, 0xa8, 0x11,
		0xb0, 0x04, 0x00, 0x70, 0x17, 0xff, 0xff, 0};

		ok(pk_decode_payload(v1, sizeof(v1), &d) && d.format == 1 && d.has_seq && d.seq == 17 &&
		   d.nsensors == 1 && d.sensors[0].slot == 1 && fabs(d.sensors[0].temperature - 45.2) < 1e-9 &&
		   d.nfans == 1 && d.fans[0].slot == 0 && d.fans[0].rpm == 1200 && d.fans[0].speed == 60 &&
		   !d.fans[0].has_target && d.fans[0].status == 0, "a format 1 payload decodes");
	}

	/* L1: C1 control characters are refused like C0 ones */
	ok(!run("{\"timestamp\":1,\"sensors\":[{\"id\":\"a\\u0085\",\"temperature\":1}]}", &err) &&
	   strcmp(err.message, "sensors[0].id: contains a control character") == 0,
	   "an id with U+0085 is refused");
	ok(run("{\"timestamp\":1,\"sensors\":[{\"id\":\"a\\u00a0\\u2028\",\"temperature\":1}]}", &err),
	   "an id with U+00A0 and U+2028 is not");

	/* numbers: the fast path agrees with strtod to the last bit */
	{
		const char *tokens[] = {"0", "-0", "45.2", "1200", "1693958400000", "0.1", "-50.5",
			"99.99", "123456789012345", "1234567890123456", "1e3", "2.5E-3", "0.000001",
		"100000", "249.99999", "3.14159265358979"};
		bool		same = true;

		for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
			if (pk_json_number(tokens[i]) != strtod(tokens[i], NULL))
			{
				printf("# %s: %.17g != %.17g\n", tokens[i], pk_json_number(tokens[i]),
					   strtod(tokens[i], NULL));
				same = false;
			}
		ok(same, "numbers convert exactly as strtod does");
	}

	/* nesting */
	{
		int			n = snprintf(big, sizeof(big), "{\"timestamp\":1,\"x\":");

		for (int i = 0; i < 70; i++)
			big[n++] = '[';
		for (int i = 0; i < 70; i++)
			big[n++] = ']';
		snprintf(big + n, sizeof(big) - n, "}");
		ok(!run(big, &err), "a document nested 71 levels deep is refused");
	}

	return failures != 0;
}
