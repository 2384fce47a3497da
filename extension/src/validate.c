/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Validation rules for data frames and the compact payload codec.
 *
 * Plain C: no PostgreSQL headers, no allocation.  ingest.c feeds it from
 * jsonb; a fuzzing harness can feed it from any JSON parser.  See
 * validate.h for the model.
 *
 * Payload layout (all integers little-endian):
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

	/* strncmp stops at the end of key, so no strlen(key) is needed */
	for (int i = json->nodes[object].first; i >= 0; i = json->nodes[i].next)
	{
		const PkJsonNode *node = &json->nodes[i];

		if (node->key && node->key[0] == key[0] &&
			strncmp(node->key, key, node->key_len) == 0 && key[node->key_len] == '\0')
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

/* A number member; missing is an error only when required. */
static bool
read_number(PkError *err, const PkJson *json, int object, const char *key,
			PkPath path, bool required, bool *present, double *out)
{
	int			i = member(json, object, key);

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

/* A string member; the result points into the document. */
static bool
read_string(PkError *err, const PkJson *json, int object, const char *key,
			PkPath path, bool required, const char **str, int *len)
{
	int			i = member(json, object, key);

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
read_ranged(PkError *err, const PkJson *json, int object, const char *key, PkPath path,
			bool required, double lo, double hi, const char *what,
			bool *present, double *out)
{
	if (!read_number(err, json, object, key, path, required, present, out))
		return false;
	return !*present || check_number(err, path, *out, lo, hi, what);
}

/* One sensor object. */
static bool
read_sensor(PkError *err, const PkJson *json, int node, int i, PkSensor *s)
{
	bool		present;

	if (json->nodes[node].type != PK_JSON_OBJECT)
		return pk_fail(err, "22023", PK_PATH_AT("sensors", i, NULL), "not an object",
					   "Each entry must be a JSON object, got %s.",
					   json_type_name(&json->nodes[node]));
	if (!read_string(err, json, node, "id", PK_PATH_AT("sensors", i, "id"), true,
					 &s->id, &s->id_len) ||
		!pk_check_id(err, PK_PATH_AT("sensors", i, "id"), s->id, s->id_len) ||
		!read_ranged(err, json, node, "temperature", PK_PATH_AT("sensors", i, "temperature"),
					 true, PK_TEMP_MIN, PK_TEMP_MAX, "Temperatures (degrees Celsius)",
					 &present, &s->temperature) ||
		!read_ranged(err, json, node, "max_temp", PK_PATH_AT("sensors", i, "max_temp"),
					 false, PK_TEMP_MIN, PK_TEMP_MAX, "max_temp (degrees Celsius)",
					 &s->has_max, &s->max_temp) ||
		!read_ranged(err, json, node, "crit_temp", PK_PATH_AT("sensors", i, "crit_temp"),
					 false, PK_TEMP_MIN, PK_TEMP_MAX, "crit_temp (degrees Celsius)",
					 &s->has_crit, &s->crit_temp) ||
		!read_string(err, json, node, "type", PK_PATH_AT("sensors", i, "type"), false,
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
read_fan_status(PkError *err, const PkJson *json, int node, int i, PkFan *f)
{
	f->status = -1;
	if (!read_string(err, json, node, "status", PK_PATH_AT("fans", i, "status"), false,
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

/* One fan object. */
static bool
read_fan(PkError *err, const PkJson *json, int node, int i, PkFan *f)
{
	bool		present;

	if (json->nodes[node].type != PK_JSON_OBJECT)
		return pk_fail(err, "22023", PK_PATH_AT("fans", i, NULL), "not an object",
					   "Each entry must be a JSON object, got %s.",
					   json_type_name(&json->nodes[node]));
	if (!read_string(err, json, node, "id", PK_PATH_AT("fans", i, "id"), true,
					 &f->id, &f->id_len) ||
		!pk_check_id(err, PK_PATH_AT("fans", i, "id"), f->id, f->id_len) ||
		!read_ranged(err, json, node, "rpm", PK_PATH_AT("fans", i, "rpm"), true,
					 0, PK_RPM_MAX, "Fan rpm", &present, &f->rpm) ||
		!read_ranged(err, json, node, "speed", PK_PATH_AT("fans", i, "speed"), false,
					 0, 100, "Fan speed (percent)", &f->has_speed, &f->speed) ||
		!read_ranged(err, json, node, "targetSpeed", PK_PATH_AT("fans", i, "targetSpeed"),
					 false, 0, 100, "Fan targetSpeed (percent)", &f->has_target, &f->target) ||
		!read_fan_status(err, json, node, i, f))
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

	health->present = 0;
	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		bool		present;

		if (!read_ranged(err, json, node, pk_health_names[f],
						 PK_PATH_AT("systemHealth", -1, pk_health_names[f]), false,
						 0, hi[f], what[f], &present, &health->value[f]))
			return false;
		if (present)
			health->present |= 1u << f;
	}
	return true;
}

/* Two sensors (or two fans) of one frame may not share an id. */
static bool
check_duplicates(PkError *err, const PkFrame *frame)
{
	for (int i = 1; i < frame->nsensors; i++)
		for (int j = 0; j < i; j++)
			if (frame->sensors[i].id_len == frame->sensors[j].id_len &&
				memcmp(frame->sensors[i].id, frame->sensors[j].id,
					   frame->sensors[i].id_len) == 0)
				return pk_fail(err, "22023", PK_PATH_AT("sensors", i, "id"), "duplicate id",
							   "sensors[%d] has the same id \"%.*s\"; ids must be unique within a frame.",
							   j, frame->sensors[i].id_len, frame->sensors[i].id);
	for (int i = 1; i < frame->nfans; i++)
		for (int j = 0; j < i; j++)
			if (frame->fans[i].id_len == frame->fans[j].id_len &&
				memcmp(frame->fans[i].id, frame->fans[j].id, frame->fans[i].id_len) == 0)
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

	if (!read_string(err, json, data, "agentId", PK_PATH("agentId"), false, &str, &len))
		return false;
	if (str && ((int) strlen(agent_id) != len || memcmp(str, agent_id, len) != 0))
		return pk_fail(err, "22023", PK_PATH("agentId"), "does not match the agent",
					   "The frame names agent \"%.*s\" but was sent for agent \"%s\".",
					   len < PK_MAX_ID_BYTES ? len : PK_MAX_ID_BYTES, str, agent_id);

	/* year 10000 in epoch ms; anything later is not a clock reading */
	if (!read_ranged(err, json, data, "timestamp", PK_PATH("timestamp"), true,
					 0, 253402300800000.0, "The timestamp (epoch milliseconds)",
					 &present, &number))
		return false;
	frame->timestamp_ms = (int64_t) llround(number);

	if (!read_ranged(err, json, data, "seq", PK_PATH("seq"), false, 0, PK_SEQ_MAX, "seq",
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

/* Bytes pk_encode_payload will write for this frame. */
size_t
pk_payload_size(const PkFrame *frame)
{
	int			nsensor_slots = 0;
	int			nfan_slots = 0;
	size_t		size = PK_HEADER_BYTES;

	for (int i = 0; i < frame->nsensors; i++)
		if (frame->sensors[i].slot + 1 > nsensor_slots)
			nsensor_slots = frame->sensors[i].slot + 1;
	for (int i = 0; i < frame->nfans; i++)
		if (frame->fans[i].slot + 1 > nfan_slots)
			nfan_slots = frame->fans[i].slot + 1;
	size += (size_t) nsensor_slots * 2 + (size_t) nfan_slots * PK_FAN_BYTES;
	if (frame->has_seq)
		for (uint64_t v = (uint64_t) frame->seq;; v >>= 7)
		{
			size++;
			if (v < 0x80)
				break;
		}
	for (int f = 0; f < PK_H_NFIELDS; f++)
		if (frame->health.present & (1u << f))
			size += health_bytes[f];
	return size;
}

/*
 * Encode a validated frame whose slots are assigned.  Returns the bytes
 * written, or 0 when out is too small or a slot is out of bounds.
 */
size_t
pk_encode_payload(const PkFrame *frame, unsigned char *out, size_t outlen)
{
	size_t		size = pk_payload_size(frame);
	int			nsensor_slots = 0;
	int			nfan_slots = 0;
	unsigned char *p;

	if (size > outlen)
		return 0;
	for (int i = 0; i < frame->nsensors; i++)
	{
		if (frame->sensors[i].slot < 0 || frame->sensors[i].slot >= PK_MAX_SLOTS)
			return 0;
		if (frame->sensors[i].slot + 1 > nsensor_slots)
			nsensor_slots = frame->sensors[i].slot + 1;
	}
	for (int i = 0; i < frame->nfans; i++)
	{
		if (frame->fans[i].slot < 0 || frame->fans[i].slot > 254)
			return 0;
		if (frame->fans[i].slot + 1 > nfan_slots)
			nfan_slots = frame->fans[i].slot + 1;
	}

	out[0] = PK_FORMAT_V1;
	out[1] = (unsigned char) frame->health.present | (frame->has_seq ? PK_HAS_SEQ : 0);
	put_u16(out + 2, (uint16_t) nsensor_slots);
	out[4] = (unsigned char) nfan_slots;
	p = out + PK_HEADER_BYTES;
	if (frame->has_seq)
	{
		uint64_t	v = (uint64_t) frame->seq;

		while (v >= 0x80)
		{
			*p++ = (unsigned char) (v & 0x7f) | 0x80;
			v >>= 7;
		}
		*p++ = (unsigned char) v;
	}

	for (int s = 0; s < nsensor_slots; s++)
		put_u16(p + 2 * s, (uint16_t) PK_TEMP_ABSENT);
	for (int i = 0; i < frame->nsensors; i++)
		put_u16(p + 2 * frame->sensors[i].slot,
				(uint16_t) (int16_t) scaled(frame->sensors[i].temperature, 100));
	p += 2 * nsensor_slots;

	for (int s = 0; s < nfan_slots; s++)
	{
		put_u24(p + s * PK_FAN_BYTES, PK_RPM_ABSENT);
		put_u16(p + s * PK_FAN_BYTES + 3, (uint16_t) -1);
		put_u16(p + s * PK_FAN_BYTES + 5, (uint16_t) -1);
		p[s * PK_FAN_BYTES + 7] = 255;
	}
	for (int i = 0; i < frame->nfans; i++)
	{
		const PkFan *f = &frame->fans[i];
		unsigned char *q = p + f->slot * PK_FAN_BYTES;

		put_u24(q, (uint32_t) scaled(f->rpm, 1));
		put_u16(q + 3, f->has_speed ? (uint16_t) scaled(f->speed, 100) : (uint16_t) -1);
		put_u16(q + 5, f->has_target ? (uint16_t) scaled(f->target, 100) : (uint16_t) -1);
		q[7] = f->status >= 0 ? (unsigned char) f->status : 255;
	}
	p += nfan_slots * PK_FAN_BYTES;

	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		double		v = frame->health.value[f];

		if (!(frame->health.present & (1u << f)))
			continue;
		if (health_bytes[f] == 2)
			put_u16(p, (uint16_t) scaled(v, 100));
		else if (f == PK_H_UPTIME)
			put_u32(p, (uint32_t) llround(v));
		else
		{
			float		fv = (float) v;
			uint32_t	bits;

			memcpy(&bits, &fv, sizeof(bits));
			put_u32(p, bits);
		}
		p += health_bytes[f];
	}
	return size;
}

/* Parse a payload's header, seq and health; false when it is malformed. */
bool
pk_decode_payload(const unsigned char *buf, size_t len, PkDecoded *out)
{
	size_t		need;
	size_t		seq_bytes = 0;
	const unsigned char *p;

	if (len < PK_HEADER_BYTES || buf[0] != PK_FORMAT_V1)
		return false;
	out->nsensor_slots = get_u16(buf + 2);
	out->nfan_slots = buf[4];
	out->has_seq = (buf[1] & PK_HAS_SEQ) != 0;
	out->seq = 0;
	if (out->has_seq)
	{
		uint64_t	v = 0;

		for (;;)
		{
			if (PK_HEADER_BYTES + seq_bytes >= len || seq_bytes == 9)
				return false;
			v |= (uint64_t) (buf[PK_HEADER_BYTES + seq_bytes] & 0x7f) << (7 * seq_bytes);
			if (!(buf[PK_HEADER_BYTES + seq_bytes++] & 0x80))
				break;
		}
		out->seq = (int64_t) v;
	}
	need = PK_HEADER_BYTES + seq_bytes + (size_t) out->nsensor_slots * 2 +
		(size_t) out->nfan_slots * PK_FAN_BYTES;
	for (int f = 0; f < PK_H_NFIELDS; f++)
		if (buf[1] & (1u << f))
			need += health_bytes[f];
	if (need != len)
		return false;

	out->sensor_base = buf + PK_HEADER_BYTES + seq_bytes;
	out->fan_base = out->sensor_base + 2 * out->nsensor_slots;
	p = out->fan_base + PK_FAN_BYTES * out->nfan_slots;
	out->health.present = buf[1] & ~PK_HAS_SEQ;
	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		if (!(buf[1] & (1u << f)))
			continue;
		if (health_bytes[f] == 2)
			out->health.value[f] = get_u16(p) / 100.0;
		else if (f == PK_H_UPTIME)
			out->health.value[f] = get_u32(p);
		else
		{
			uint32_t	bits = get_u32(p);
			float		fv;

			memcpy(&fv, &bits, sizeof(fv));
			out->health.value[f] = fv;
		}
		p += health_bytes[f];
	}
	return true;
}

/* The temperature in a sensor slot; false when the frame did not carry it. */
bool
pk_decoded_sensor(const PkDecoded *d, int slot, double *temperature)
{
	int16_t		raw;

	if (slot < 0 || slot >= d->nsensor_slots)
		return false;
	raw = (int16_t) get_u16(d->sensor_base + 2 * slot);
	if (raw == PK_TEMP_ABSENT)
		return false;
	*temperature = raw / 100.0;
	return true;
}

/* The values in a fan slot; false when the frame did not carry that fan. */
bool
pk_decoded_fan(const PkDecoded *d, int slot, double *rpm,
			   double *speed, bool *has_speed,
			   double *target, bool *has_target, int *status)
{
	const unsigned char *q;
	uint32_t	raw_rpm;
	uint16_t	raw;

	if (slot < 0 || slot >= d->nfan_slots)
		return false;
	q = d->fan_base + slot * PK_FAN_BYTES;
	raw_rpm = get_u24(q);
	if (raw_rpm == PK_RPM_ABSENT)
		return false;
	*rpm = raw_rpm;
	raw = get_u16(q + 3);
	*has_speed = raw != (uint16_t) -1;
	*speed = raw / 100.0;
	raw = get_u16(q + 5);
	*has_target = raw != (uint16_t) -1;
	*target = raw / 100.0;
	*status = q[7] == 255 ? -1 : q[7];
	return true;
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
