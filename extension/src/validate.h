/*-------------------------------------------------------------------------
 *
 * validate.h
 *	  The frame model, its validation rules and the compact payload codec.
 *
 * Everything declared here is plain C with no PostgreSQL dependency, so the
 * same rules can be compiled into a fuzzing harness or a unit test outside
 * the server.  An adaptor (ingest.c for jsonb, a fuzzer for raw JSON) walks
 * its input and feeds fields into a PkFrame through the pk_* calls; each
 * call checks what it is given and fills a PkError on the first problem.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PANKHA_VALIDATE_H
#define PANKHA_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PK_MAX_SENSORS		256
#define PK_MAX_FANS			64
#define PK_MAX_ID_BYTES		64
#define PK_MAX_KIND_BYTES	32
#define PK_MAX_STATUS_BYTES	32
#define PK_MAX_STATUS_CODE	254 /* highest code pankha.fan_statuses may hold */
#define PK_STATUS_INLINE	254 /* payload status byte (format 2): the word is carried */
#define PK_MAX_FRAME_BYTES	(1024 * 1024)
#define PK_MAX_FUTURE_MS	(5 * 60 * 1000)
#define PK_MAX_SLOTS		32767

/* Physical limits a value must respect to be stored. */
#define PK_TEMP_MIN			(-50.0)
#define PK_TEMP_MAX			250.0
#define PK_RPM_MAX			100000.0
#define PK_UPTIME_MAX		4294967295.0
#define PK_NET_MAX			1e12
#define PK_LOAD_MAX			100000.0
#define PK_SEQ_MAX			9007199254740991.0	/* 2^53 - 1, exact in JSON */

#if defined(__GNUC__)
#define PK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PK_PRINTF(f, a)
#endif

/* What went wrong, phrased for the person who sent the frame. */
typedef struct PkError
{
	char		sqlstate[6];	/* five-character SQLSTATE, NUL-terminated */
	char		message[256];	/* "<field path>: <problem>" */
	char		detail[320];	/* what is allowed, as a sentence */
} PkError;

/*
 * A field path such as sensors[3].temperature, kept in parts and only
 * formatted when an error is reported (formatting is costly per field).
 */
typedef struct PkPath
{
	const char *base;			/* "sensors", "systemHealth", "timestamp" */
	int			index;			/* array index, or -1 */
	const char *field;			/* field within the element, or NULL */
} PkPath;

#define PK_PATH(base)				((PkPath) {(base), -1, NULL})
#define PK_PATH_AT(base, i, field)	((PkPath) {(base), (i), (field)})

/* Bits of PkHealth.present, in payload order. */
typedef enum PkHealthField
{
	PK_H_CPU = 0,
	PK_H_MEM,
	PK_H_UPTIME,
	PK_H_DISK,
	PK_H_NET_RX,
	PK_H_NET_TX,
	PK_H_LOAD1,
	PK_H_NFIELDS
} PkHealthField;

typedef struct PkSensor
{
	const char *id;				/* not NUL-terminated; points into the input */
	int			id_len;
	const char *kind;			/* "type" in the frame, or NULL */
	int			kind_len;
	double		temperature;
	bool		has_max;
	double		max_temp;
	bool		has_crit;
	double		crit_temp;
	int			slot;			/* payload position, set by the caller */
} PkSensor;

typedef struct PkFan
{
	const char *id;
	int			id_len;
	double		rpm;
	bool		has_speed;
	double		speed;
	bool		has_target;
	double		target;
	const char *status_word;	/* "status" in the frame, or NULL */
	int			status_len;
	int			status;			/* its code in pankha.fan_statuses below
								 * PK_STATUS_INLINE, or -1 (the word is then
								 * carried in the payload); set by the caller */
	int			slot;
} PkFan;

typedef struct PkHealth
{
	unsigned	present;		/* bit per PkHealthField */
	double		value[PK_H_NFIELDS];
} PkHealth;

typedef struct PkFrame
{
	int64_t		timestamp_ms;
	bool		has_seq;
	int64_t		seq;
	int			nsensors;
	int			nfans;
	PkHealth	health;
	PkSensor	sensors[PK_MAX_SENSORS];
	PkFan		fans[PK_MAX_FANS];
} PkFrame;

/*
 * A parsed JSON document: a flat array of nodes linked by index, built by
 * feeding parser events (pk_json_begin/key/scalar/end) from any JSON
 * parser.  Strings point into memory the caller keeps alive.
 */
typedef enum PkJsonType
{
	PK_JSON_NULL,
	PK_JSON_BOOL,
	PK_JSON_NUMBER,
	PK_JSON_STRING,
	PK_JSON_ARRAY,
	PK_JSON_OBJECT
} PkJsonType;

typedef struct PkJsonNode
{
	PkJsonType	type;
	int			next;			/* next sibling, or -1 */
	int			first;			/* first child of a container, or -1 */
	int			last;			/* last child of a container, or -1 */
	int			count;			/* children of a container */
	const char *key;			/* member name inside an object, else NULL */
	int			key_len;
	const char *str;			/* string value */
	int			len;
	double		number;			/* number value; booleans as 0/1 */
} PkJsonNode;

#define PK_JSON_MAX_DEPTH	64

typedef struct PkJson
{
	PkJsonNode *nodes;
	int			count;
	int			capacity;
	int			stack[PK_JSON_MAX_DEPTH];	/* open containers */
	int			depth;
	int			too_deep;		/* levels opened beyond the limit */
	const char *key;			/* member name waiting for its value */
	int			key_len;
	bool		failed;			/* out of memory or nested too deeply */
	void	   *(*grow) (void *ptr, size_t size);	/* realloc-like */
} PkJson;

/* Names the wire uses for each health field, indexed by PkHealthField. */
extern const char *const pk_health_names[PK_H_NFIELDS];


extern bool pk_fail(PkError *err, const char *sqlstate, PkPath path,
					const char *problem, const char *detail_fmt,...) PK_PRINTF(5, 6);
extern void pk_format_path(PkPath path, char *out, size_t outlen);

/* Building a PkJson from parser events. */
extern void pk_json_init(PkJson *json, void *(*grow) (void *ptr, size_t size));
extern void pk_json_key(PkJson *json, const char *key, int len);
extern void pk_json_begin(PkJson *json, PkJsonType type);
extern void pk_json_end(PkJson *json);
extern void pk_json_scalar(PkJson *json, PkJsonType type, const char *str, int len,
						   double number);
extern int	pk_json_get(const PkJson *json, int object, const char *key);
extern double pk_json_number(const char *token);

/*
 * The rules: turn the JSON node at root (the data object of a data
 * message, or the whole message) into a validated frame for agent_id.
 */
extern bool pk_frame_from_json(const PkJson *json, int root, const char *agent_id,
							   PkFrame *frame, PkError *err);

extern bool pk_check_id(PkError *err, PkPath path, const char *id, int len);
extern bool pk_check_frame_size(PkError *err, size_t bytes);

/* Time rules: returns false (with err) for a frame older than retention. */
extern bool pk_check_time(PkError *err, const PkFrame *frame, int64_t now_ms,
						  int64_t retention_ms, bool *in_future);

/*
 * Payload codec.  Slots must be assigned before encoding.  Payloads carry
 * only the sensors and fans of their frame (as runs of consecutive slots),
 * so their size follows the frame, not the agent's history of slots.
 */
extern size_t pk_payload_size(const PkFrame *frame);
extern size_t pk_encode_payload(const PkFrame *frame, unsigned char *out, size_t outlen);

typedef struct PkDecodedSensor
{
	int			slot;
	double		temperature;
} PkDecodedSensor;

typedef struct PkDecodedFan
{
	int			slot;
	double		rpm;
	bool		has_speed;
	double		speed;
	bool		has_target;
	double		target;
	int			status;			/* code in pankha.fan_statuses, or -1 */
	const char *word;			/* or the status word itself (not NUL-terminated) */
	int			word_len;
} PkDecodedFan;

/* A decoded payload: the sensors and fans it carries, in slot order. */
typedef struct PkDecoded
{
	int			format;			/* 1 (dense slots, 0.1.0) or 2 */
	bool		has_seq;
	int64_t		seq;
	int			nsensors;
	int			nfans;
	PkHealth	health;
	PkDecodedSensor sensors[PK_MAX_SENSORS];
	PkDecodedFan fans[PK_MAX_FANS];
} PkDecoded;

extern bool pk_decode_payload(const unsigned char *buf, size_t len, PkDecoded *out);

#endif							/* PANKHA_VALIDATE_H */
