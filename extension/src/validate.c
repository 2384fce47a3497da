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
 *	u8	health presence bits (PkHealthField)
 *	u16 number of sensor slots S
 *	u8	number of fan slots F
 *	S x i16		temperature in 1/100 degC, INT16_MIN when the slot is absent
 *	F x { i32 rpm (-1 absent), i16 speed in 1/100 % (-1 absent),
 *		  i16 target in 1/100 % (-1 absent), u8 status (255 absent) }
 *	health, for each present bit in order: cpu, mem, disk as u16 1/100 %;
 *	uptime as u32 seconds; net rx, net tx, load1 as IEEE float32.
 *
 *-------------------------------------------------------------------------
 */
#include "validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PK_FORMAT_V1		1
#define PK_HEADER_BYTES		5
#define PK_FAN_BYTES		9
#define PK_TEMP_ABSENT		INT16_MIN

const char *const pk_health_names[PK_H_NFIELDS] = {
	"cpuUsage", "memoryUsage", "agentUptime", "diskUsage",
	"netRxBytesPerSec", "netTxBytesPerSec", "load1"
};

const char *const pk_fan_statuses[] = {
	"ok", "warning", "critical", "error", "failed", "stalled", "stopped",
	"unknown", NULL
};

/* Bytes each health field takes in the payload. */
static const int health_bytes[PK_H_NFIELDS] = {2, 2, 4, 2, 4, 4, 4};

static void put_u16(unsigned char *p, uint16_t v);
static void put_u32(unsigned char *p, uint32_t v);
static uint16_t get_u16(const unsigned char *p);
static uint32_t get_u32(const unsigned char *p);
static int32_t scaled(double v, double scale);

/* Reset a frame to hold nothing. */
void
pk_frame_init(PkFrame *frame)
{
	frame->timestamp_ms = 0;
	frame->has_seq = false;
	frame->seq = 0;
	frame->nsensors = 0;
	frame->nfans = 0;
	frame->health.present = 0;
}

/* Record an error; always returns false so callers can "return pk_fail()". */
bool
pk_fail(PkError *err, const char *sqlstate, const char *path,
		const char *problem, const char *detail_fmt,...)
{
	va_list		ap;

	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate);
	snprintf(err->message, sizeof(err->message), "%s: %s", path, problem);
	err->detail[0] = '\0';
	if (detail_fmt)
	{
		va_start(ap, detail_fmt);
		vsnprintf(err->detail, sizeof(err->detail), detail_fmt, ap);
		va_end(ap);
	}
	return false;
}

/* An id is 1..64 bytes with no control characters. */
bool
pk_check_id(PkError *err, const char *path, const char *id, int len)
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
	}
	return true;
}

/* A number must be finite and within [lo, hi]. */
bool
pk_check_number(PkError *err, const char *path, double v,
				double lo, double hi, const char *what)
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
		return pk_fail(err, "54000", "frame", "larger than 1 MiB",
					   "A frame may be at most %d bytes; this one has %zu.",
					   PK_MAX_FRAME_BYTES, bytes);
	return true;
}

/* Arrays of sensors and fans have an upper bound. */
bool
pk_check_count(PkError *err, const char *path, int count, int max)
{
	if (count > max)
		return pk_fail(err, "54000", path, "too many entries",
					   "A frame may carry at most %d %s; this one has %d.",
					   max, path, count);
	return true;
}

/* timestamp: epoch milliseconds, a non-negative number. */
bool
pk_set_timestamp(PkError *err, PkFrame *frame, double ms)
{
	/* year 10000 in epoch ms; anything later is not a clock reading */
	if (!pk_check_number(err, "timestamp", ms, 0, 253402300800000.0,
						 "The timestamp (epoch milliseconds)"))
		return false;
	frame->timestamp_ms = (int64_t) llround(ms);
	return true;
}

/* seq: an optional non-negative integer counter. */
bool
pk_set_seq(PkError *err, PkFrame *frame, double seq)
{
	if (!pk_check_number(err, "seq", seq, 0, PK_SEQ_MAX, "seq"))
		return false;
	if (seq != floor(seq))
		return pk_fail(err, "22023", "seq", "not an integer",
					   "seq must be a whole number; got %g.", seq);
	frame->has_seq = true;
	frame->seq = (int64_t) seq;
	return true;
}

/* One optional systemHealth field, range-checked by kind. */
bool
pk_set_health(PkError *err, PkFrame *frame, PkHealthField field, double v)
{
	char		path[64];
	double		hi;
	const char *what;

	snprintf(path, sizeof(path), "systemHealth.%s", pk_health_names[field]);
	switch (field)
	{
		case PK_H_CPU:
		case PK_H_MEM:
		case PK_H_DISK:
			hi = 100;
			what = "A usage percentage";
			break;
		case PK_H_UPTIME:
			hi = PK_UPTIME_MAX;
			what = "agentUptime (seconds)";
			break;
		case PK_H_NET_RX:
		case PK_H_NET_TX:
			hi = PK_NET_MAX;
			what = "A network rate (bytes per second)";
			break;
		default:
			hi = PK_LOAD_MAX;
			what = "load1";
			break;
	}
	if (!pk_check_number(err, path, v, 0, hi, what))
		return false;
	frame->health.present |= 1u << field;
	frame->health.value[field] = v;
	return true;
}

/* A fan status must be one of the protocol's words. */
bool
pk_set_fan_status(PkError *err, PkFan *fan, const char *path,
				  const char *status, int len)
{
	for (int i = 0; pk_fan_statuses[i]; i++)
	{
		if ((int) strlen(pk_fan_statuses[i]) == len &&
			memcmp(pk_fan_statuses[i], status, len) == 0)
		{
			fan->status = i;
			return true;
		}
	}
	return pk_fail(err, "22023", path, "unknown fan status",
				   "A fan status is one of ok, warning, critical, error, failed, stalled, stopped or unknown.");
}

/* Check one sensor's values (its id was checked when it was read). */
bool
pk_check_sensor(PkError *err, const PkSensor *s, int index)
{
	char		path[64];

	snprintf(path, sizeof(path), "sensors[%d].temperature", index);
	if (!pk_check_number(err, path, s->temperature, PK_TEMP_MIN, PK_TEMP_MAX,
						 "Temperatures (degrees Celsius)"))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].max_temp", index);
	if (s->has_max && !pk_check_number(err, path, s->max_temp, PK_TEMP_MIN,
									   PK_TEMP_MAX, "max_temp (degrees Celsius)"))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].crit_temp", index);
	if (s->has_crit && !pk_check_number(err, path, s->crit_temp, PK_TEMP_MIN,
										PK_TEMP_MAX, "crit_temp (degrees Celsius)"))
		return false;
	return true;
}

/* Check one fan's values. */
bool
pk_check_fan(PkError *err, const PkFan *f, int index)
{
	char		path[64];

	snprintf(path, sizeof(path), "fans[%d].rpm", index);
	if (!pk_check_number(err, path, f->rpm, 0, PK_RPM_MAX, "Fan rpm"))
		return false;
	snprintf(path, sizeof(path), "fans[%d].speed", index);
	if (f->has_speed && !pk_check_number(err, path, f->speed, 0, 100,
										 "Fan speed (percent)"))
		return false;
	snprintf(path, sizeof(path), "fans[%d].targetSpeed", index);
	if (f->has_target && !pk_check_number(err, path, f->target, 0, 100,
										  "Fan targetSpeed (percent)"))
		return false;
	return true;
}

/* Two sensors (or two fans) of one frame may not share an id. */
bool
pk_check_duplicates(PkError *err, const PkFrame *frame)
{
	char		path[64];

	for (int i = 1; i < frame->nsensors; i++)
		for (int j = 0; j < i; j++)
			if (frame->sensors[i].id_len == frame->sensors[j].id_len &&
				memcmp(frame->sensors[i].id, frame->sensors[j].id,
					   frame->sensors[i].id_len) == 0)
			{
				snprintf(path, sizeof(path), "sensors[%d].id", i);
				return pk_fail(err, "22023", path, "duplicate id",
							   "sensors[%d] has the same id \"%.*s\"; ids must be unique within a frame.",
							   j, frame->sensors[i].id_len, frame->sensors[i].id);
			}
	for (int i = 1; i < frame->nfans; i++)
		for (int j = 0; j < i; j++)
			if (frame->fans[i].id_len == frame->fans[j].id_len &&
				memcmp(frame->fans[i].id, frame->fans[j].id,
					   frame->fans[i].id_len) == 0)
			{
				snprintf(path, sizeof(path), "fans[%d].id", i);
				return pk_fail(err, "22023", path, "duplicate id",
							   "fans[%d] has the same id \"%.*s\"; ids must be unique within a frame.",
							   j, frame->fans[i].id_len, frame->fans[i].id);
			}
	return true;
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
		return pk_fail(err, "22008", "timestamp", "older than the retention window",
					   "Frames older than %lld minutes (pankha.raw_retention) are not stored; this one is %lld minutes old.",
					   (long long) (retention_ms / 60000),
					   (long long) ((now_ms - frame->timestamp_ms) / 60000));
	return true;
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
	out[1] = (unsigned char) frame->health.present;
	put_u16(out + 2, (uint16_t) nsensor_slots);
	out[4] = (unsigned char) nfan_slots;
	p = out + PK_HEADER_BYTES;

	for (int s = 0; s < nsensor_slots; s++)
		put_u16(p + 2 * s, (uint16_t) PK_TEMP_ABSENT);
	for (int i = 0; i < frame->nsensors; i++)
		put_u16(p + 2 * frame->sensors[i].slot,
				(uint16_t) (int16_t) scaled(frame->sensors[i].temperature, 100));
	p += 2 * nsensor_slots;

	for (int s = 0; s < nfan_slots; s++)
	{
		put_u32(p + s * PK_FAN_BYTES, (uint32_t) -1);
		put_u16(p + s * PK_FAN_BYTES + 4, (uint16_t) -1);
		put_u16(p + s * PK_FAN_BYTES + 6, (uint16_t) -1);
		p[s * PK_FAN_BYTES + 8] = 255;
	}
	for (int i = 0; i < frame->nfans; i++)
	{
		const PkFan *f = &frame->fans[i];
		unsigned char *q = p + f->slot * PK_FAN_BYTES;

		put_u32(q, (uint32_t) scaled(f->rpm, 1));
		put_u16(q + 4, f->has_speed ? (uint16_t) scaled(f->speed, 100) : (uint16_t) -1);
		put_u16(q + 6, f->has_target ? (uint16_t) scaled(f->target, 100) : (uint16_t) -1);
		q[8] = f->status >= 0 ? (unsigned char) f->status : 255;
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

/* Parse a payload's header and health; false when it is malformed. */
bool
pk_decode_payload(const unsigned char *buf, size_t len, PkDecoded *out)
{
	size_t		need;
	const unsigned char *p;

	if (len < PK_HEADER_BYTES || buf[0] != PK_FORMAT_V1 || (buf[1] & 0x80))
		return false;
	out->nsensor_slots = get_u16(buf + 2);
	out->nfan_slots = buf[4];
	need = PK_HEADER_BYTES + (size_t) out->nsensor_slots * 2 +
		(size_t) out->nfan_slots * PK_FAN_BYTES;
	for (int f = 0; f < PK_H_NFIELDS; f++)
		if (buf[1] & (1u << f))
			need += health_bytes[f];
	if (need != len)
		return false;

	out->sensor_base = buf + PK_HEADER_BYTES;
	out->fan_base = out->sensor_base + 2 * out->nsensor_slots;
	p = out->fan_base + PK_FAN_BYTES * out->nfan_slots;
	out->health.present = buf[1];
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
	raw_rpm = get_u32(q);
	if (raw_rpm == (uint32_t) -1)
		return false;
	*rpm = raw_rpm;
	raw = get_u16(q + 4);
	*has_speed = raw != (uint16_t) -1;
	*speed = raw / 100.0;
	raw = get_u16(q + 6);
	*has_target = raw != (uint16_t) -1;
	*target = raw / 100.0;
	*status = q[8] == 255 ? -1 : q[8];
	return true;
}

static void
put_u16(unsigned char *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
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
