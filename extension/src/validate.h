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

/* What went wrong, phrased for the person who sent the frame. */
typedef struct PkError
{
	char		sqlstate[6];	/* five-character SQLSTATE, NUL-terminated */
	char		message[256];	/* "<field path>: <problem>" */
	char		detail[320];	/* what is allowed, as a sentence */
} PkError;

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
	int			status;			/* index into pk_fan_statuses, or -1 */
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

/* Names the wire uses for each health field, indexed by PkHealthField. */
extern const char *const pk_health_names[PK_H_NFIELDS];

/* The fan status words the protocol knows, NULL-terminated. */
extern const char *const pk_fan_statuses[];

extern void pk_frame_init(PkFrame *frame);
#if defined(__GNUC__)
#define PK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PK_PRINTF(f, a)
#endif

extern bool pk_fail(PkError *err, const char *sqlstate, const char *path,
					const char *problem, const char *detail_fmt,...) PK_PRINTF(5, 6);

extern bool pk_check_id(PkError *err, const char *path, const char *id, int len);
extern bool pk_check_number(PkError *err, const char *path, double v,
							double lo, double hi, const char *what);
extern bool pk_check_frame_size(PkError *err, size_t bytes);
extern bool pk_check_count(PkError *err, const char *path, int count, int max);
extern bool pk_set_timestamp(PkError *err, PkFrame *frame, double ms);
extern bool pk_set_seq(PkError *err, PkFrame *frame, double seq);
extern bool pk_set_health(PkError *err, PkFrame *frame, PkHealthField field, double v);
extern bool pk_set_fan_status(PkError *err, PkFan *fan, const char *path,
							  const char *status, int len);
extern bool pk_check_sensor(PkError *err, const PkSensor *s, int index);
extern bool pk_check_fan(PkError *err, const PkFan *f, int index);
extern bool pk_check_duplicates(PkError *err, const PkFrame *frame);

/* Time rules: returns false (with err) for a frame older than retention. */
extern bool pk_check_time(PkError *err, const PkFrame *frame, int64_t now_ms,
						  int64_t retention_ms, bool *in_future);

/* Payload codec.  Slots must be assigned before encoding. */
extern size_t pk_payload_size(const PkFrame *frame);
extern size_t pk_encode_payload(const PkFrame *frame, unsigned char *out, size_t outlen);

typedef struct PkDecoded
{
	int			nsensor_slots;
	int			nfan_slots;
	const unsigned char *sensor_base;
	const unsigned char *fan_base;
	PkHealth	health;
} PkDecoded;

extern bool pk_decode_payload(const unsigned char *buf, size_t len, PkDecoded *out);
extern bool pk_decoded_sensor(const PkDecoded *d, int slot, double *temperature);
extern bool pk_decoded_fan(const PkDecoded *d, int slot, double *rpm,
						   double *speed, bool *has_speed,
						   double *target, bool *has_target, int *status);

#endif							/* PANKHA_VALIDATE_H */
