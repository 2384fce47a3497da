/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Validation rules for data frames and the compact payload codec.
 *
 * Plain C: no PostgreSQL headers, no allocation.  ingest.c feeds it from
 * jsonb; a fuzzing harness can feed it from any JSON parser.  See
 * validate.h for the model.
 *
 * Payloads are written in format 2 (see codec_v2()): only the sensors and
 * fans a frame carries, as runs of consecutive slots, and the fan status
 * words the dictionary does not hold carried in the payload itself.
 * Format 1, written by 0.1.0, is still read.  Its layout (all integers
 * little-endian):
 *
 *	u8	format (1)
 *	u8	health presence bits (PkHealthField); bit 7: a seq follows
 *	u16 number of sensor slots S
 *	u8	number of fan slots F
 *	[seq as an unsigned LEB128 varint, when bit 7 is set]
 *	S x i16		temperature in 1/100 degC, INT16_MIN when the slot is absent
 *	F x { u24 rpm (0xffffff absent), u16 speed in 1/100 % (0xffff absent),
 *		  u16 target in 1/100 % (0xffff absent), u8 status (255 absent) }
 *	health, for each present bit in order: cpu, mem, disk as u16 1/100 %;
 *	uptime as u32 seconds; net rx, net tx, load1 as IEEE float32.
 *
 *-------------------------------------------------------------------------
 */
#include "validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_FORMAT_V1		1
#define PK_HEADER_BYTES		5
#define PK_FAN_BYTES		8
#define PK_HAS_SEQ			0x80
#define PK_RPM_ABSENT		0xffffff
#define PK_TEMP_ABSENT		INT16_MIN

const char *const pk_health_names[PK_H_NFIELDS] = {
	"cpuUsage", "memoryUsage", "agentUptime", "diskUsage",
	"netRxBytesPerSec", "netTxBytesPerSec", "load1"
};

/* Bytes each health field takes in the payload. */
static const int health_bytes[PK_H_NFIELDS] = {2, 2, 4, 2, 4, 4, 4};

static void put_u16(unsigned char *p, uint16_t v);
static void put_u24(unsigned char *p, uint32_t v);
static void put_u32(unsigned char *p, uint32_t v);
static uint16_t get_u16(const unsigned char *p);
static uint32_t get_u24(const unsigned char *p);
static uint32_t get_u32(const unsigned char *p);
static int32_t scaled(double v, double scale);
static const char *json_type_name(const PkJsonNode *node);

/* --------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------------
 */

/* Write a path such as sensors[3].temperature into out. */
void
pk_format_path(PkPath path, char *out, size_t outlen)
{
	int			n = snprintf(out, outlen, "%s", path.base ? path.base : "");

	if (n < 0 || (size_t) n >= outlen)
		return;
	if (path.index >= 0)
		n += snprintf(out + n, outlen - n, "[%d]", path.index);
	if (n < 0 || (size_t) n >= outlen)
		return;
	if (path.field)
		snprintf(out + n, outlen - n, "%s%s", path.base ? "." : "", path.field);
}

/* Record an error; always returns false so callers can "return pk_fail()". */
bool
pk_fail(PkError *err, const char *sqlstate, PkPath path,
		const char *problem, const char *detail_fmt,...)
{
	char		where[128];
	va_list		ap;

	pk_format_path(path, where, sizeof(where));
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate);
	snprintf(err->message, sizeof(err->message), "%s: %s", where, problem);
	err->detail[0] = '\0';
	if (detail_fmt)
	{
		va_start(ap, detail_fmt);
		vsnprintf(err->detail, sizeof(err->detail), detail_fmt, ap);
		va_end(ap);
	}
	return false;
}

/* --------------------------------------------------------------------------
 * The JSON tree
 * --------------------------------------------------------------------------
 */

/* Start an empty document; grow is called to enlarge the node array. */
void
pk_json_init(PkJson *json, void *(*grow) (void *ptr, size_t size))
{
	memset(json, 0, sizeof(*json));
	json->grow = grow;
}

/* The member name the next value belongs to. */
void
pk_json_key(PkJson *json, const char *key, int len)
{
	json->key = key;
	json->key_len = len;
}

/* Append a node under the open container; -1 when it cannot be added. */
static int
add_node(PkJson *json, PkJsonType type)
{
	PkJsonNode *node;
	int			index;

	if (json->failed)
		return -1;
	if (json->count == json->capacity)
	{
		int			capacity = json->capacity ? json->capacity * 2 : 128;
		PkJsonNode *nodes = json->grow(json->nodes, sizeof(PkJsonNode) * capacity);

		if (nodes == NULL)
		{
			json->failed = true;
			return -1;
		}
		json->nodes = nodes;
		json->capacity = capacity;
	}
	index = json->count++;
	node = &json->nodes[index];
	memset(node, 0, sizeof(*node));
	node->type = type;
	node->next = node->first = node->last = -1;
	node->key = json->key;
	node->key_len = json->key ? json->key_len : 0;
	json->key = NULL;
	if (json->depth > 0)
	{
		PkJsonNode *parent = &json->nodes[json->stack[json->depth - 1]];

		if (parent->last >= 0)
			json->nodes[parent->last].next = index;
		else
			parent->first = index;
		parent->last = index;
		parent->count++;
	}
	return index;
}

/* An object or array opens. */
void
pk_json_begin(PkJson *json, PkJsonType type)
{
	int			index;

	if (json->too_deep > 0 || json->depth == PK_JSON_MAX_DEPTH)
	{
		json->too_deep++;
		json->failed = true;
		return;
	}
	index = add_node(json, type);
	if (index >= 0)
		json->stack[json->depth++] = index;
}

/* The innermost object or array closes. */
void
pk_json_end(PkJson *json)
{
	if (json->too_deep > 0)
		json->too_deep--;
	else if (json->depth > 0)
		json->depth--;
}

/* A string, number, boolean or null value. */
void
pk_json_scalar(PkJson *json, PkJsonType type, const char *str, int len, double number)
{
	int			index = add_node(json, type);

	if (index < 0)
		return;
	json->nodes[index].str = str;
	json->nodes[index].len = len;
	json->nodes[index].number = number;
}

/*
 * A JSON number token as a double.  Plain decimals of at most 15 digits
 * (nearly all that agents send) are converted exactly and fast: the digits
 * form an integer below 2^53 and one division by an exact power of ten is
 * correctly rounded.  Anything else goes to strtod().
 */
double
pk_json_number(const char *token)
{
	static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
	1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
	const char *p = token;
	bool		negative = false;
	uint64_t	mantissa = 0;
	int			digits = 0;
	int			decimals = -1;

	if (*p == '-')
	{
		negative = true;
		p++;
	}
	for (; *p; p++)
	{
		if (*p >= '0' && *p <= '9')
		{
			mantissa = mantissa * 10 + (uint64_t) (*p - '0');
			if (++digits > 15)
				return strtod(token, NULL);
			if (decimals >= 0)
				decimals++;
		}
		else if (*p == '.' && decimals < 0)
			decimals = 0;
		else
			return strtod(token, NULL);
	}
	if (digits == 0)
		return strtod(token, NULL);
	{
		double		v = (double) mantissa;

		if (decimals > 0)
			v /= pow10[decimals];
		return negative ? -v : v;
	}
}

/* The member of an object with the given key (the last one if repeated), or -1. */
int
pk_json_get(const PkJson *json, int object, const char *key)
{
	int			found = -1;
	int			len = (int) strlen(key);

	/* lengths first: most members of a frame's objects differ in length */
	for (int i = json->nodes[object].first; i >= 0; i = json->nodes[i].next)
	{
		const PkJsonNode *node = &json->nodes[i];

		if (node->key && node->key_len == len && node->key[0] == key[0] &&
			memcmp(node->key, key, len) == 0)
			found = i;
	}
	return found;
}

/* --------------------------------------------------------------------------
 * Field readers: each checks the JSON type and fills err on a mismatch
 * --------------------------------------------------------------------------
 */

/* The member, with JSON null treated as absent. */
static int
member(const PkJson *json, int object, const char *key)
{
	int			i = pk_json_get(json, object, key);

	return (i >= 0 && json->nodes[i].type == PK_JSON_NULL) ? -1 : i;
}

/*
 * The members of an object named keys[0..nkeys) (of lengths lens), in one
 * walk of its members: out[k] is what member(json, object, keys[k]) gives
 * (the last one if repeated, JSON null as absent), for the objects of which
 * a frame has many (sensors, fans).
 */
static void
find_members(const PkJson *json, int object, const char *const *keys, const int *lens,
			 int nkeys, int *out)
{
	for (int k = 0; k < nkeys; k++)
		out[k] = -1;
	for (int i = json->nodes[object].first; i >= 0; i = json->nodes[i].next)
	{
		const PkJsonNode *node = &json->nodes[i];

		if (node->key == NULL)
			continue;
		for (int k = 0; k < nkeys; k++)
			if (node->key_len == lens[k] && memcmp(node->key, keys[k], lens[k]) == 0)
			{
				out[k] = i;
				break;
			}
	}
	for (int k = 0; k < nkeys; k++)
		if (out[k] >= 0 && json->nodes[out[k]].type == PK_JSON_NULL)
			out[k] = -1;
}

/*
 * A number member (node i, -1 when absent or null); missing is an error
 * only when required.
 */
static bool
read_number(PkError *err, const PkJson *json, int i,
			PkPath path, bool required, bool *present, double *out)
{
	*present = false;
	if (i < 0)
	{
		if (required)
			return pk_fail(err, "22023", path, "missing",
						   "This field is required and must be a number.");
		return true;
	}
	if (json->nodes[i].type != PK_JSON_NUMBER)
		return pk_fail(err, "22023", path, "not a number",
					   "Expected a JSON number, got %s.", json_type_name(&json->nodes[i]));
	*out = json->nodes[i].number;
	*present = true;
	return true;
}

/* A string member (node i, or -1); the result points into the document. */
static bool
read_string(PkError *err, const PkJson *json, int i,
			PkPath path, bool required, const char **str, int *len)
{
	*str = NULL;
	*len = 0;
	if (i < 0)
	{
		if (required)
			return pk_fail(err, "22023", path, "missing",
						   "This field is required and must be a string.");
		return true;
	}
	if (json->nodes[i].type != PK_JSON_STRING)
		return pk_fail(err, "22023", path, "not a string",
					   "Expected a JSON string, got %s.", json_type_name(&json->nodes[i]));
	*str = json->nodes[i].str;
	*len = json->nodes[i].len;
	return true;
}

/* A container member of the wanted type, or -1 when absent. */
static bool
read_container(PkError *err, const PkJson *json, int object, const char *key,
			   PkJsonType type, int *out)
{
	int			i = member(json, object, key);

	*out = -1;
	if (i < 0)
		return true;
	if (json->nodes[i].type != type)
		return pk_fail(err, "22023", PK_PATH(key),
					   type == PK_JSON_ARRAY ? "not an array" : "not an object",
					   "Expected a JSON %s, got %s.",
					   type == PK_JSON_ARRAY ? "array" : "object",
					   json_type_name(&json->nodes[i]));
	*out = i;
	return true;
}

/* --------------------------------------------------------------------------
 * The rules
 * --------------------------------------------------------------------------
 */

/*
 * An id is 1..64 bytes with no control characters: C0 (U+0000-U+001F), DEL
 * and C1 (U+0080-U+009F, in UTF-8 the bytes C2 80 to C2 9F).  The same rule
 * as pankha.valid_id() in SQL, spelt out by code point there too, so that
 * no locale can make the two disagree and a frame the rules passed fail a
 * CHECK in the middle of a batch.
 */
bool
pk_check_id(PkError *err, PkPath path, const char *id, int len)
{
	if (len <= 0)
		return pk_fail(err, "22023", path, "empty",
					   "Ids must be 1 to %d bytes long.", PK_MAX_ID_BYTES);
	if (len > PK_MAX_ID_BYTES)
		return pk_fail(err, "22001", path, "longer than 64 bytes",
					   "Ids must be 1 to %d bytes long; this one has %d.",
					   PK_MAX_ID_BYTES, len);
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) id[i];

		if (c < 0x20 || c == 0x7f)
			return pk_fail(err, "22023", path, "contains a control character",
						   "Ids may not contain control characters (byte %d is 0x%02x).",
						   i, c);
		if (c == 0xc2 && i + 1 < len && (unsigned char) id[i + 1] >= 0x80 &&
			(unsigned char) id[i + 1] <= 0x9f)
			return pk_fail(err, "22023", path, "contains a control character",
						   "Ids may not contain control characters (bytes %d and %d are U+%04X).",
						   i, i + 1, (unsigned char) id[i + 1]);
	}
	return true;
}

/* A number must be finite and within [lo, hi]. */
static bool
check_number(PkError *err, PkPath path, double v, double lo, double hi, const char *what)
{
	if (!isfinite(v))
		return pk_fail(err, "22003", path, "not a finite number",
					   "%s must be a finite number between %.15g and %.15g.", what, lo, hi);
	if (v < lo || v > hi)
		return pk_fail(err, "22003", path, "out of range",
					   "%s must be between %.15g and %.15g; got %.15g.", what, lo, hi, v);
	return true;
}

/* Frames over 1 MiB are refused before anything else is looked at. */
bool
pk_check_frame_size(PkError *err, size_t bytes)
{
	if (bytes > PK_MAX_FRAME_BYTES)
		return pk_fail(err, "54000", PK_PATH("frame"), "larger than 1 MiB",
					   "A frame may be at most %d bytes; this one has %zu.",
					   PK_MAX_FRAME_BYTES, bytes);
	return true;
}

/* A number member within a range; absent optional members are fine. */
static bool
read_ranged(PkError *err, const PkJson *json, int i, PkPath path,
			bool required, double lo, double hi, const char *what,
			bool *present, double *out)
{
	if (!read_number(err, json, i, path, required, present, out))
		return false;
	return !*present || check_number(err, path, *out, lo, hi, what);
}

/* The members of a sensor object, in the order of sensor_keys. */
enum
{
	SK_ID, SK_TEMPERATURE, SK_MAX, SK_CRIT, SK_TYPE, SK_N
};
static const char *const sensor_keys[SK_N] = {"id", "temperature", "max_temp", "crit_temp", "type"};
static const int sensor_key_lens[SK_N] = {sizeof("id") - 1, sizeof("temperature") - 1, sizeof("max_temp") - 1,
sizeof("crit_temp") - 1, sizeof("type") - 1};

/* One sensor object. */
static bool
read_sensor(PkError *err, const PkJson *json, int node, int i, PkSensor *s)
{
	bool		present;
	int			m[SK_N];

	if (json->nodes[node].type != PK_JSON_OBJECT)
		return pk_fail(err, "22023", PK_PATH_AT("sensors", i, NULL), "not an object",
					   "Each entry must be a JSON object, got %s.",
					   json_type_name(&json->nodes[node]));
	find_members(json, node, sensor_keys, sensor_key_lens, SK_N, m);
	if (!read_string(err, json, m[SK_ID], PK_PATH_AT("sensors", i, "id"), true,
					 &s->id, &s->id_len) ||
		!pk_check_id(err, PK_PATH_AT("sensors", i, "id"), s->id, s->id_len) ||
		!read_ranged(err, json, m[SK_TEMPERATURE], PK_PATH_AT("sensors", i, "temperature"),
					 true, PK_TEMP_MIN, PK_TEMP_MAX, "Temperatures (degrees Celsius)",
					 &present, &s->temperature) ||
		!read_ranged(err, json, m[SK_MAX], PK_PATH_AT("sensors", i, "max_temp"),
					 false, PK_TEMP_MIN, PK_TEMP_MAX, "max_temp (degrees Celsius)",
					 &s->has_max, &s->max_temp) ||
		!read_ranged(err, json, m[SK_CRIT], PK_PATH_AT("sensors", i, "crit_temp"),
					 false, PK_TEMP_MIN, PK_TEMP_MAX, "crit_temp (degrees Celsius)",
					 &s->has_crit, &s->crit_temp) ||
		!read_string(err, json, m[SK_TYPE], PK_PATH_AT("sensors", i, "type"), false,
					 &s->kind, &s->kind_len))
		return false;
	if (s->kind && s->kind_len > PK_MAX_KIND_BYTES)
		return pk_fail(err, "22001", PK_PATH_AT("sensors", i, "type"), "longer than 32 bytes",
					   "A sensor type must be at most %d bytes; this one has %d.",
					   PK_MAX_KIND_BYTES, s->kind_len);
	if (s->kind && !pk_check_id(err, PK_PATH_AT("sensors", i, "type"), s->kind, s->kind_len))
		return false;
	s->slot = -1;
	return true;
}

/*
 * A fan status is a short word ("ok", "stalled", "auto" ...).  The protocol
 * does not close the list, so any word is kept; the caller turns it into a
 * code of pankha.fan_statuses.
 */
static bool
read_fan_status(PkError *err, const PkJson *json, int status, int i, PkFan *f)
{
	f->status = -1;
	if (!read_string(err, json, status, PK_PATH_AT("fans", i, "status"), false,
					 &f->status_word, &f->status_len))
		return false;
	if (f->status_word == NULL)
		return true;
	if (f->status_len > PK_MAX_STATUS_BYTES)
		return pk_fail(err, "22001", PK_PATH_AT("fans", i, "status"), "longer than 32 bytes",
					   "A fan status must be at most %d bytes; this one has %d.",
					   PK_MAX_STATUS_BYTES, f->status_len);
	return pk_check_id(err, PK_PATH_AT("fans", i, "status"), f->status_word, f->status_len);
}

/* The members of a fan object, in the order of fan_keys. */
enum
{
	FK_ID, FK_RPM, FK_SPEED, FK_TARGET, FK_STATUS, FK_N
};
static const char *const fan_keys[FK_N] = {"id", "rpm", "speed", "targetSpeed", "status"};
static const int fan_key_lens[FK_N] = {sizeof("id") - 1, sizeof("rpm") - 1, sizeof("speed") - 1,
sizeof("targetSpeed") - 1, sizeof("status") - 1};

/* One fan object. */
static bool
read_fan(PkError *err, const PkJson *json, int node, int i, PkFan *f)
{
	bool		present;
	int			m[FK_N];

	if (json->nodes[node].type != PK_JSON_OBJECT)
		return pk_fail(err, "22023", PK_PATH_AT("fans", i, NULL), "not an object",
					   "Each entry must be a JSON object, got %s.",
					   json_type_name(&json->nodes[node]));
	find_members(json, node, fan_keys, fan_key_lens, FK_N, m);
	if (!read_string(err, json, m[FK_ID], PK_PATH_AT("fans", i, "id"), true,
					 &f->id, &f->id_len) ||
		!pk_check_id(err, PK_PATH_AT("fans", i, "id"), f->id, f->id_len) ||
		!read_ranged(err, json, m[FK_RPM], PK_PATH_AT("fans", i, "rpm"), true,
					 0, PK_RPM_MAX, "Fan rpm", &present, &f->rpm) ||
		!read_ranged(err, json, m[FK_SPEED], PK_PATH_AT("fans", i, "speed"), false,
					 0, 100, "Fan speed (percent)", &f->has_speed, &f->speed) ||
		!read_ranged(err, json, m[FK_TARGET], PK_PATH_AT("fans", i, "targetSpeed"),
					 false, 0, 100, "Fan targetSpeed (percent)", &f->has_target, &f->target) ||
		!read_fan_status(err, json, m[FK_STATUS], i, f))
		return false;
	f->slot = -1;
	return true;
}

/* systemHealth: every field optional, each with its own range. */
static bool
read_health(PkError *err, const PkJson *json, int node, PkHealth *health)
{
	static const double hi[PK_H_NFIELDS] = {100, 100, PK_UPTIME_MAX, 100,
	PK_NET_MAX, PK_NET_MAX, PK_LOAD_MAX};
	static const char *const what[PK_H_NFIELDS] = {
		"A usage percentage", "A usage percentage", "agentUptime (seconds)",
		"A usage percentage", "A network rate (bytes per second)",
		"A network rate (bytes per second)", "load1"
	};

	static const int lens[PK_H_NFIELDS] = {sizeof("cpuUsage") - 1, sizeof("memoryUsage") - 1,
		sizeof("agentUptime") - 1, sizeof("diskUsage") - 1, sizeof("netRxBytesPerSec") - 1,
	sizeof("netTxBytesPerSec") - 1, sizeof("load1") - 1};
	int			m[PK_H_NFIELDS];

	health->present = 0;
	find_members(json, node, pk_health_names, lens, PK_H_NFIELDS, m);
	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		bool		present;

		if (!read_ranged(err, json, m[f],
						 PK_PATH_AT("systemHealth", -1, pk_health_names[f]), false,
						 0, hi[f], what[f], &present, &health->value[f]))
			return false;
		if (present)
			health->present |= 1u << f;
	}
	return true;
}

/*
 * The first id (in order) equal to an earlier one: its index, and the
 * earlier one's in *earlier; -1 when all differ.  Ids are spread over an
 * open-addressing table of their indexes (hashed with FNV-1a), so a frame
 * of n ids costs n hashes rather than n^2 / 2 comparisons.  The earlier id
 * is the only one before it that is equal (those before it all differ).
 */
static int
first_duplicate(const char *const *ids, const int *lens, int n, int *earlier)
{
	int16_t		table[2 * (PK_MAX_SENSORS > PK_MAX_FANS ? PK_MAX_SENSORS : PK_MAX_FANS)];
	int			size = 16;

	while (size < 2 * n)
		size *= 2;
	memset(table, -1, sizeof(int16_t) * size);
	for (int i = 0; i < n; i++)
	{
		uint32_t	h = 2166136261u;
		int			slot;

		for (int b = 0; b < lens[i]; b++)
			h = (h ^ (unsigned char) ids[i][b]) * 16777619u;
		for (slot = (int) (h & (uint32_t) (size - 1)); table[slot] >= 0; slot = (slot + 1) & (size - 1))
		{
			int			j = table[slot];

			if (lens[j] == lens[i] && memcmp(ids[j], ids[i], lens[i]) == 0)
			{
				*earlier = j;
				return i;
			}
		}
		table[slot] = (int16_t) i;
	}
	return -1;
}

/* Two sensors (or two fans) of one frame may not share an id. */
static bool
check_duplicates(PkError *err, const PkFrame *frame)
{
	const char *ids[PK_MAX_SENSORS > PK_MAX_FANS ? PK_MAX_SENSORS : PK_MAX_FANS];
	int			lens[PK_MAX_SENSORS > PK_MAX_FANS ? PK_MAX_SENSORS : PK_MAX_FANS];
	int			i;
	int			j;

	for (i = 0; i < frame->nsensors; i++)
	{
		ids[i] = frame->sensors[i].id;
		lens[i] = frame->sensors[i].id_len;
	}
	if ((i = first_duplicate(ids, lens, frame->nsensors, &j)) >= 0)
		return pk_fail(err, "22023", PK_PATH_AT("sensors", i, "id"), "duplicate id",
					   "sensors[%d] has the same id \"%.*s\"; ids must be unique within a frame.",
					   j, frame->sensors[i].id_len, frame->sensors[i].id);
	for (i = 0; i < frame->nfans; i++)
	{
		ids[i] = frame->fans[i].id;
		lens[i] = frame->fans[i].id_len;
	}
	if ((i = first_duplicate(ids, lens, frame->nfans, &j)) >= 0)
		return pk_fail(err, "22023", PK_PATH_AT("fans", i, "id"), "duplicate id",
					   "fans[%d] has the same id \"%.*s\"; ids must be unique within a frame.",
					   j, frame->fans[i].id_len, frame->fans[i].id);
	return true;
}

/*
 * Turn the JSON node at root into a validated frame.  root is either the
 * data object of a data message or the whole {"type":"data","data":{}}
 * message.  Unknown members are ignored.
 */
bool
pk_frame_from_json(const PkJson *json, int root, const char *agent_id,
				   PkFrame *frame, PkError *err)
{
	int			data = root;
	int			node;
	int			array;
	bool		present;
	double		number;
	const char *str;
	int			len;

	frame->nsensors = frame->nfans = 0;
	frame->has_seq = false;
	frame->health.present = 0;

	if (json->nodes[root].type != PK_JSON_OBJECT)
		return pk_fail(err, "22023", PK_PATH("frame"), "not a JSON object",
					   "A frame is the data object of a data message, or the whole message.");

	node = member(json, root, "type");
	if (node >= 0)
	{
		if (json->nodes[node].type != PK_JSON_STRING || json->nodes[node].len != 4 ||
			memcmp(json->nodes[node].str, "data", 4) != 0)
			return pk_fail(err, "22023", PK_PATH("type"), "not \"data\"",
						   "Only messages of type \"data\" carry readings.");
		data = member(json, root, "data");
		if (data < 0)
			return pk_fail(err, "22023", PK_PATH("data"), "missing",
						   "A data message carries its readings in a \"data\" object.");
		if (json->nodes[data].type != PK_JSON_OBJECT)
			return pk_fail(err, "22023", PK_PATH("data"), "not an object",
						   "Expected a JSON object, got %s.", json_type_name(&json->nodes[data]));
	}

	if (!read_string(err, json, member(json, data, "agentId"), PK_PATH("agentId"), false, &str, &len))
		return false;
	if (str && ((int) strlen(agent_id) != len || memcmp(str, agent_id, len) != 0))
		return pk_fail(err, "22023", PK_PATH("agentId"), "does not match the agent",
					   "The frame names agent \"%.*s\" but was sent for agent \"%s\".",
					   len < PK_MAX_ID_BYTES ? len : PK_MAX_ID_BYTES, str, agent_id);

	/* year 10000 in epoch ms; anything later is not a clock reading */
	if (!read_ranged(err, json, member(json, data, "timestamp"), PK_PATH("timestamp"), true,
					 0, 253402300800000.0, "The timestamp (epoch milliseconds)",
					 &present, &number))
		return false;
	frame->timestamp_ms = (int64_t) llround(number);

	if (!read_ranged(err, json, member(json, data, "seq"), PK_PATH("seq"), false, 0, PK_SEQ_MAX, "seq",
					 &present, &number))
		return false;
	if (present)
	{
		if (number != floor(number))
			return pk_fail(err, "22023", PK_PATH("seq"), "not an integer",
						   "seq must be a whole number; got %.15g.", number);
		frame->has_seq = true;
		frame->seq = (int64_t) number;
	}

	if (!read_container(err, json, data, "sensors", PK_JSON_ARRAY, &array))
		return false;
	if (array >= 0)
	{
		if (json->nodes[array].count > PK_MAX_SENSORS)
			return pk_fail(err, "54000", PK_PATH("sensors"), "too many entries",
						   "A frame may carry at most %d sensors; this one has %d.",
						   PK_MAX_SENSORS, json->nodes[array].count);
		for (int i = json->nodes[array].first; i >= 0; i = json->nodes[i].next)
		{
			if (!read_sensor(err, json, i, frame->nsensors, &frame->sensors[frame->nsensors]))
				return false;
			frame->nsensors++;
		}
	}

	if (!read_container(err, json, data, "fans", PK_JSON_ARRAY, &array))
		return false;
	if (array >= 0)
	{
		if (json->nodes[array].count > PK_MAX_FANS)
			return pk_fail(err, "54000", PK_PATH("fans"), "too many entries",
						   "A frame may carry at most %d fans; this one has %d.",
						   PK_MAX_FANS, json->nodes[array].count);
		for (int i = json->nodes[array].first; i >= 0; i = json->nodes[i].next)
		{
			if (!read_fan(err, json, i, frame->nfans, &frame->fans[frame->nfans]))
				return false;
			frame->nfans++;
		}
	}

	if (!read_container(err, json, data, "systemHealth", PK_JSON_OBJECT, &node))
		return false;
	if (node >= 0 && !read_health(err, json, node, &frame->health))
		return false;

	return check_duplicates(err, frame);
}

/*
 * A frame older than the raw retention window is refused; one more than
 * five minutes ahead of the server is accepted but flagged, and the caller
 * stores it at the server's time.
 */
bool
pk_check_time(PkError *err, const PkFrame *frame, int64_t now_ms,
			  int64_t retention_ms, bool *in_future)
{
	*in_future = frame->timestamp_ms > now_ms + PK_MAX_FUTURE_MS;
	if (frame->timestamp_ms < now_ms - retention_ms)
		return pk_fail(err, "22008", PK_PATH("timestamp"), "older than the retention window",
					   "Frames older than %lld minutes (pankha.raw_retention) are not stored; this one is %lld minutes old.",
					   (long long) (retention_ms / 60000),
					   (long long) ((now_ms - frame->timestamp_ms) / 60000));
	return true;
}

/* Name of a JSON value's type, for error details. */
static const char *
json_type_name(const PkJsonNode *node)
{
	switch (node->type)
	{
		case PK_JSON_NULL:
			return "null";
		case PK_JSON_BOOL:
			return "a boolean";
		case PK_JSON_NUMBER:
			return "a number";
		case PK_JSON_STRING:
			return "a string";
		case PK_JSON_ARRAY:
			return "an array";
		default:
			return "an object";
	}
}

/* --------------------------------------------------------------------------
 * Payload codec
 * --------------------------------------------------------------------------
 */

/* Bytes of v as an unsigned LEB128 varint; written at p unless p is NULL. */
static size_t
put_varint(unsigned char *p, uint64_t v)
{
	size_t		n = 0;

	while (v >= 0x80)
	{
		if (p)
			p[n] = (unsigned char) (v & 0x7f) | 0x80;
		n++;
		v >>= 7;
	}
	if (p)
		p[n] = (unsigned char) v;
	return n + 1;
}

/* Read a varint of at most 10 bytes at *p (before end); false when cut or too long. */
static bool
get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 70; shift += 7)
	{
		unsigned char b;

		if (*p >= end)
			return false;
		b = *(*p)++;
		if (shift == 63 && (b & 0x7e))
			return false;		/* more than 64 bits */
		*v |= (uint64_t) (b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/*
 * Indexes 0..n-1 sorted by slots[i] (insertion sort: n is small, and
 * frames usually list their ids in slot order already).
 */
static void
sort_by_slot(int *order, int n, const int *slots)
{
	for (int i = 0; i < n; i++)
	{
		int			j = i;

		while (j > 0 && slots[order[j - 1]] > slots[i])
		{
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
}

/* The status byte of a fan in a format 2 payload. */
static unsigned char
fan_status_byte(const PkFan *f)
{
	if (f->status_word == NULL)
		return 255;
	if (f->status >= 0 && f->status < PK_STATUS_INLINE)
		return (unsigned char) f->status;
	return PK_STATUS_INLINE;
}

/*
 * Encode or (out NULL) measure the format 2 payload of a frame:
 *
 *	u8	format (2)
 *	u8	health presence bits (PkHealthField); bit 7: a seq follows
 *	[seq as an unsigned LEB128 varint, when bit 7 is set]
 *	sensors: varint R, then R runs of { varint gap, varint count,
 *		count x i16 temperature in 1/100 degC }; a run covers slots
 *		start..start+count-1, start being gap slots after the previous run's end
 *	fans: the same, each entry { u24 rpm, u16 speed in 1/100 % (0xffff
 *		absent), u16 target in 1/100 % (0xffff absent), u8 status (255 absent,
 *		254 carried below, else its code in pankha.fan_statuses) }
 *	health, for each present bit in order: cpu, mem, disk as u16 1/100 %;
 *		uptime as u32 seconds; net rx, net tx, load1 as IEEE float32
 *	for each fan whose status byte is 254, in slot order: u8 length, the word
 *
 * Returns the size, or 0 when a slot is out of bounds.
 */
static size_t
codec_v2(const PkFrame *frame, unsigned char *out)
{
	int			order[PK_MAX_SENSORS > PK_MAX_FANS ? PK_MAX_SENSORS : PK_MAX_FANS];
	int			slots[PK_MAX_SENSORS > PK_MAX_FANS ? PK_MAX_SENSORS : PK_MAX_FANS] = {0};
	size_t		n = 0;
	unsigned char *w;

#define AT(off) (out ? out + (off) : NULL)
	if (out)
	{
		out[0] = 2;
		out[1] = (unsigned char) frame->health.present | (frame->has_seq ? PK_HAS_SEQ : 0);
	}
	n = 2;
	if (frame->has_seq)
		n += put_varint(AT(n), (uint64_t) frame->seq);

	/* sensors, in runs of consecutive slots */
	for (int i = 0; i < frame->nsensors; i++)
	{
		if (frame->sensors[i].slot < 0 || frame->sensors[i].slot >= PK_MAX_SLOTS)
			return 0;
		slots[i] = frame->sensors[i].slot;
	}
	sort_by_slot(order, frame->nsensors, slots);
	{
		int			runs = 0;

		for (int i = 0; i < frame->nsensors; i++)
			if (i == 0 || frame->sensors[order[i]].slot != frame->sensors[order[i - 1]].slot + 1)
				runs++;
		n += put_varint(AT(n), runs);
		for (int i = 0, next = 0; i < frame->nsensors;)
		{
			int			start = frame->sensors[order[i]].slot;
			int			count = 1;

			if (start < next)
				return 0;		/* two sensors in one slot */

			while (i + count < frame->nsensors &&
				   frame->sensors[order[i + count]].slot == start + count)
				count++;
			n += put_varint(AT(n), start - next);
			n += put_varint(AT(n), count);
			for (int k = 0; k < count; k++, n += 2)
				if (out)
					put_u16(out + n, (uint16_t) (int16_t)
							scaled(frame->sensors[order[i + k]].temperature, 100));
			next = start + count;
			i += count;
		}
	}

	/* fans, the same way */
	for (int i = 0; i < frame->nfans; i++)
	{
		if (frame->fans[i].slot < 0 || frame->fans[i].slot > 254)
			return 0;
		slots[i] = frame->fans[i].slot;
	}
	sort_by_slot(order, frame->nfans, slots);
	{
		int			runs = 0;

		for (int i = 0; i < frame->nfans; i++)
			if (i == 0 || frame->fans[order[i]].slot != frame->fans[order[i - 1]].slot + 1)
				runs++;
		n += put_varint(AT(n), runs);
		for (int i = 0, next = 0; i < frame->nfans;)
		{
			int			start = frame->fans[order[i]].slot;
			int			count = 1;

			if (start < next)
				return 0;

			while (i + count < frame->nfans && frame->fans[order[i + count]].slot == start + count)
				count++;
			n += put_varint(AT(n), start - next);
			n += put_varint(AT(n), count);
			for (int k = 0; k < count; k++, n += PK_FAN_BYTES)
			{
				const PkFan *f = &frame->fans[order[i + k]];

				if (!out)
					continue;
				w = out + n;
				put_u24(w, (uint32_t) scaled(f->rpm, 1));
				put_u16(w + 3, f->has_speed ? (uint16_t) scaled(f->speed, 100) : (uint16_t) -1);
				put_u16(w + 5, f->has_target ? (uint16_t) scaled(f->target, 100) : (uint16_t) -1);
				w[7] = fan_status_byte(f);
			}
			next = start + count;
			i += count;
		}
	}

	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		double		v = frame->health.value[f];

		if (!(frame->health.present & (1u << f)))
			continue;
		if (out && health_bytes[f] == 2)
			put_u16(out + n, (uint16_t) scaled(v, 100));
		else if (out && f == PK_H_UPTIME)
			put_u32(out + n, (uint32_t) llround(v));
		else if (out)
		{
			float		fv = (float) v;
			uint32_t	bits;

			memcpy(&bits, &fv, sizeof(bits));
			put_u32(out + n, bits);
		}
		n += health_bytes[f];
	}

	/* status words the dictionary does not have (order is still the fans') */
	for (int i = 0; i < frame->nfans; i++)
	{
		const PkFan *f = &frame->fans[order[i]];

		if (fan_status_byte(f) != PK_STATUS_INLINE)
			continue;
		if (out)
		{
			out[n] = (unsigned char) f->status_len;
			memcpy(out + n + 1, f->status_word, f->status_len);
		}
		n += 1 + f->status_len;
	}
#undef AT
	return n;
}

/* Bytes pk_encode_payload will write for this frame (0: a slot is out of bounds). */
size_t
pk_payload_size(const PkFrame *frame)
{
	return codec_v2(frame, NULL);
}

/*
 * Encode a validated frame whose slots are assigned.  Returns the bytes
 * written, or 0 when out is too small or a slot is out of bounds.
 */
size_t
pk_encode_payload(const PkFrame *frame, unsigned char *out, size_t outlen)
{
	size_t		size = codec_v2(frame, NULL);

	if (size == 0 || size > outlen)
		return 0;
	return codec_v2(frame, out);
}

/* Read the health values of the present bits at *p; false when cut. */
static bool
decode_health(const unsigned char **p, const unsigned char *end, unsigned bits, PkHealth *h)
{
	h->present = bits;
	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		if (!(bits & (1u << f)))
			continue;
		if (end - *p < health_bytes[f])
			return false;
		if (health_bytes[f] == 2)
			h->value[f] = get_u16(*p) / 100.0;
		else if (f == PK_H_UPTIME)
			h->value[f] = get_u32(*p);
		else
		{
			uint32_t	bits32 = get_u32(*p);
			float		fv;

			memcpy(&fv, &bits32, sizeof(fv));
			h->value[f] = fv;
		}
		*p += health_bytes[f];
	}
	return true;
}

/* One fan entry of either format. */
static void
decode_fan(const unsigned char *q, int slot, PkDecodedFan *f)
{
	uint16_t	raw;

	f->slot = slot;
	f->rpm = get_u24(q);
	raw = get_u16(q + 3);
	f->has_speed = raw != (uint16_t) -1;
	f->speed = raw / 100.0;
	raw = get_u16(q + 5);
	f->has_target = raw != (uint16_t) -1;
	f->target = raw / 100.0;
	f->status = q[7] == 255 ? -1 : q[7];
	f->word = NULL;
	f->word_len = 0;
}

/* Format 1 (0.1.0): every slot up to the highest, absent ones marked. */
static bool
decode_v1(const unsigned char *buf, size_t len, PkDecoded *out)
{
	const unsigned char *p = buf + PK_HEADER_BYTES;
	const unsigned char *end = buf + len;
	int			nsensor_slots;
	int			nfan_slots;
	uint64_t	seq = 0;

	if (len < PK_HEADER_BYTES)
		return false;
	nsensor_slots = get_u16(buf + 2);
	nfan_slots = buf[4];
	out->has_seq = (buf[1] & PK_HAS_SEQ) != 0;
	if (out->has_seq && !get_varint(&p, end, &seq))
		return false;
	out->seq = (int64_t) seq;
	if ((size_t) (end - p) < (size_t) nsensor_slots * 2 + (size_t) nfan_slots * PK_FAN_BYTES)
		return false;
	for (int s = 0; s < nsensor_slots; s++, p += 2)
	{
		int16_t		raw = (int16_t) get_u16(p);

		if (raw == PK_TEMP_ABSENT)
			continue;
		if (out->nsensors == PK_MAX_SENSORS)
			return false;		/* ingest never wrote such a frame */
		out->sensors[out->nsensors].slot = s;
		out->sensors[out->nsensors++].temperature = raw / 100.0;
	}
	for (int s = 0; s < nfan_slots; s++, p += PK_FAN_BYTES)
	{
		if (get_u24(p) == PK_RPM_ABSENT)
			continue;
		if (out->nfans == PK_MAX_FANS)
			return false;
		decode_fan(p, s, &out->fans[out->nfans++]);
	}
	return decode_health(&p, end, buf[1] & ~PK_HAS_SEQ, &out->health) && p == end;
}

/* Format 2: runs of slots, status words carried at the end. */
static bool
decode_v2(const unsigned char *buf, size_t len, PkDecoded *out)
{
	const unsigned char *p = buf + 2;
	const unsigned char *end = buf + len;
	uint64_t	v,
				runs,
				gap,
				count;
	int			next = 0;

	if (len < 2)
		return false;
	out->has_seq = (buf[1] & PK_HAS_SEQ) != 0;
	if (out->has_seq)
	{
		if (!get_varint(&p, end, &v))
			return false;
		out->seq = (int64_t) v;
	}

	if (!get_varint(&p, end, &runs) || runs > PK_MAX_SENSORS)
		return false;
	for (uint64_t r = 0; r < runs; r++)
	{
		if (!get_varint(&p, end, &gap) || !get_varint(&p, end, &count) || count == 0 ||
			gap >= PK_MAX_SLOTS || count > (uint64_t) (PK_MAX_SENSORS - out->nsensors) ||
			next + gap + count > PK_MAX_SLOTS || (uint64_t) (end - p) < 2 * count)
			return false;
		next += (int) gap;
		for (uint64_t k = 0; k < count; k++, p += 2)
		{
			out->sensors[out->nsensors].slot = next++;
			out->sensors[out->nsensors++].temperature = (int16_t) get_u16(p) / 100.0;
		}
	}

	next = 0;
	if (!get_varint(&p, end, &runs) || runs > PK_MAX_FANS)
		return false;
	for (uint64_t r = 0; r < runs; r++)
	{
		if (!get_varint(&p, end, &gap) || !get_varint(&p, end, &count) || count == 0 ||
			gap > 254 || count > (uint64_t) (PK_MAX_FANS - out->nfans) ||
			next + gap + count > 255 || (uint64_t) (end - p) < PK_FAN_BYTES * count)
			return false;
		next += (int) gap;
		for (uint64_t k = 0; k < count; k++, p += PK_FAN_BYTES)
		{
			PkDecodedFan *f = &out->fans[out->nfans++];

			decode_fan(p, next++, f);
			if (f->status == PK_STATUS_INLINE)
				f->status = -2;	/* its word follows the health values */
		}
	}

	if (!decode_health(&p, end, buf[1] & ~PK_HAS_SEQ, &out->health))
		return false;
	for (int i = 0; i < out->nfans; i++)
	{
		PkDecodedFan *f = &out->fans[i];

		if (f->status != -2)
			continue;
		if (p >= end || *p == 0 || *p > PK_MAX_STATUS_BYTES || end - p - 1 < *p)
			return false;
		f->status = -1;
		f->word = (const char *) p + 1;
		f->word_len = *p;
		p += 1 + *p;
	}
	return p == end;
}

/* Decode a payload of either format; false when it is malformed. */
bool
pk_decode_payload(const unsigned char *buf, size_t len, PkDecoded *out)
{
	out->nsensors = out->nfans = 0;
	out->has_seq = false;
	out->seq = 0;
	out->health.present = 0;
	if (len < 1)
		return false;
	out->format = buf[0];
	if (buf[0] == PK_FORMAT_V1)
		return decode_v1(buf, len, out);
	if (buf[0] == 2)
		return decode_v2(buf, len, out);
	return false;
}

static void
put_u16(unsigned char *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void
put_u24(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static uint16_t
get_u16(const unsigned char *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
get_u24(const unsigned char *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16);
}

static uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

/* A validated value in fixed-point units, rounded to nearest. */
static int32_t
scaled(double v, double scale)
{
	return (int32_t) lround(v * scale);
}
