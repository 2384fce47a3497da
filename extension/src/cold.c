/*-------------------------------------------------------------------------
 *
 * cold.c
 *	  Packing many frames of one agent into one compressed block, and back.
 *
 * Cold storage (extension/sql/57_cold.sql) keeps an agent's frames of one
 * hour as one row of pankha.frames_cold.  pankha.cold_pack() turns the
 * frames' times and payloads into a block; pankha.cold_frames() gives them
 * back exactly, byte for byte, so whatever reads payloads reads cold frames
 * as it reads raw ones.
 *
 * Payloads are laid out column-wise.  A payload of format 2 (validate.c)
 * is cut into its fields: the format and flag bytes, seq and the run
 * headers as varints, each temperature, each fan's rpm, speed, target and
 * status, each health value, the bytes of status words.  Consecutive
 * frames with the same fields (an agent's frames nearly always are) form a
 * segment, stored field by field: each field's values over the segment's
 * frames as the change from the previous frame, or as the change of that
 * change (seq, uptime), whichever is smaller, divided by their greatest
 * common divisor (temperatures move in steps of a chip's resolution), as
 * zigzag varints.  The values are mostly zeros and small numbers, which
 * zstd then squeezes.  A
 * payload that is not of format 2 (0.1.0's format 1) is stored as it is.
 * Any bytes come back exactly: a payload is cut into fields only when its
 * fields give back its bytes.  Times are stored as zigzag varints: the frame
 * time as the change of its step (delta of delta, in milliseconds when
 * every time is a whole millisecond), the receive time as its distance
 * from the frame time or as its change (whichever is smaller for the
 * block).
 *
 * Block:   byte 2 (version) | varint frames | varint body bytes | zstd(body)
 * Body:    varint scale | ts stream | varint received_at mode
 *          | received_at stream | segments
 * Segment: varint frames | varint fields (0: payloads stored as they are)
 *          | fields: a type byte each, then per field a mode byte, a
 *            varint divisor and a zigzag varint per frame
 *          | as they are: a varint length per frame, then the bytes
 * Blocks of version 1 (payload bytes column-wise, each less the previous
 * frame's) are still read.
 *
 * A planner hook lets a time filter on the frames of a block (pankha.frames
 * and the reading views) skip the blocks outside it: a condition on the ts
 * of pankha.cold_frames(c.packed) is also put on c's hour, first_ts and
 * last_ts, which bound every frame of the row.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include <math.h>
#include <zstd.h>

#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parse_func.h"
#include "parser/parse_oper.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "validate.h"

PG_FUNCTION_INFO_V1(pankha_cold_pack);
PG_FUNCTION_INFO_V1(pankha_cold_frames);
PG_FUNCTION_INFO_V1(pankha_cold_series);

#define COLD_VERSION_BYTES	1	/* payload bytes column-wise */
#define COLD_VERSION		2	/* payload fields column-wise */
#define COLD_ZSTD_LEVEL 9
#define COLD_MAX_FRAMES (1 << 20)

static void
put_varint(StringInfo s, uint64 v)
{
	while (v >= 0x80)
	{
		appendStringInfoChar(s, (char) ((v & 0x7f) | 0x80));
		v >>= 7;
	}
	appendStringInfoChar(s, (char) v);
}

static inline int
varint_len(uint64 v)
{
	int			n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint64
zigzag(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

static inline int64
unzigzag(uint64 v)
{
	return (int64) (v >> 1) ^ -(int64) (v & 1);
}

static void corrupt(const char *what) pg_attribute_noreturn();

static void
corrupt(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("malformed pankha cold block"),
			 errdetail("The %s is not as pankha.cold_pack() writes it.", what)));
}

/* A varint at *p, or a corruption error when the block ends first. */
static uint64
get_varint(const unsigned char **p, const unsigned char *end, const char *what)
{
	uint64		v = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		unsigned char b;

		if (*p >= end)
			corrupt(what);
		b = *(*p)++;
		v |= (uint64) (b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	corrupt(what);
	return 0;					/* not reached */
}

/* The elements of a one-dimensional array argument without NULLs. */
static int
array_arg(ArrayType *a, Oid type, Datum **values, const char *name)
{
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", name)));
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	deconstruct_array(a, type, typlen, typbyval, typalign, values, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s[%d] is null", name, i + 1),
					 errdetail("Every frame packed needs its time, receive time and payload.")));
	return n;
}


/*
 * Field types: fixed little-endian integers of 1 to 4 bytes, a varint, or
 * a 4-byte float (network rates, load), kept as its integer value when it
 * is a whole number (times 2; its bits times 2 plus 1 otherwise), so that
 * its changes are those of the value.
 */
#define F_VARINT	5
#define F_FLOAT		6
#define F_MAXVARINT 9			/* bytes: a varint of up to 63 bits */

/* Bytes each health value takes in a format-2 payload (validate.c). */
static const int health_width[PK_H_NFIELDS] = {2, 2, 4, 2, 4, 4, 4};

/* A payload cut into fields, or not (nfields < 0: kept as it is). */
typedef struct ColdFields
{
	int			nfields;
	unsigned char *types;
	uint64	   *values;
} ColdFields;

typedef struct FieldCursor
{
	const unsigned char *p;
	const unsigned char *end;
	ColdFields *f;
} FieldCursor;

/* Take a fixed field of w bytes; false when the payload ends first. */
static bool
take_fixed(FieldCursor *c, int w, uint64 *v)
{
	uint64		x = 0;

	if (c->end - c->p < w)
		return false;
	for (int i = 0; i < w; i++)
		x |= (uint64) c->p[i] << (8 * i);
	c->p += w;
	c->f->types[c->f->nfields] = (unsigned char) w;
	c->f->values[c->f->nfields++] = x;
	if (v)
		*v = x;
	return true;
}

/* Take a 4-byte float field; false when the payload ends first. */
static bool
take_float(FieldCursor *c)
{
	uint64		bits;
	uint32		b32;
	float		f;

	if (!take_fixed(c, 4, &bits))
		return false;
	b32 = (uint32) bits;
	memcpy(&f, &b32, sizeof(f));
	c->f->types[c->f->nfields - 1] = F_FLOAT;
	if (isfinite(f) && f == truncf(f) && fabsf(f) < 2147483648.0f)
	{
		float		back = (float) (int64) f;
		uint32		back32;

		memcpy(&back32, &back, sizeof(back32));
		if (back32 == b32)
		{
			c->f->values[c->f->nfields - 1] = zigzag((int64) f) << 1;
			return true;
		}
	}
	c->f->values[c->f->nfields - 1] = (bits << 1) | 1;
	return true;
}

/* The 4 bytes of a float field's value; false when it is not one. */
static bool
float_bits(uint64 v, uint32 *bits)
{
	if (v & 1)
	{
		if ((v >> 1) > PG_UINT32_MAX)
			return false;
		*bits = (uint32) (v >> 1);
	}
	else
	{
		int64		i = unzigzag(v >> 1);
		float		f;

		if (i >= ((int64) 1 << 31) || i <= -((int64) 1 << 31))
			return false;
		f = (float) i;
		memcpy(bits, &f, sizeof(*bits));
	}
	return true;
}

/* Take a varint field written the shortest way; false otherwise. */
static bool
take_varint(FieldCursor *c, uint64 *v)
{
	uint64		x = 0;
	int			i;

	for (i = 0; i < F_MAXVARINT; i++)
	{
		if (c->p + i >= c->end)
			return false;
		x |= (uint64) (c->p[i] & 0x7f) << (7 * i);
		if (!(c->p[i] & 0x80))
			break;
	}
	if (i == F_MAXVARINT || (i > 0 && c->p[i] == 0))
		return false;
	c->p += i + 1;
	c->f->types[c->f->nfields] = F_VARINT;
	c->f->values[c->f->nfields++] = x;
	if (v)
		*v = x;
	return true;
}

/*
 * Cut a format-2 payload into fields (into f, with room for len fields).
 * Sets f->nfields to -1 when the bytes are not a payload of that shape.
 */
static void
cut_fields(const unsigned char *b, int len, ColdFields *f)
{
	FieldCursor c = {b, b + len, f};
	uint64		flags;
	uint64		runs;
	uint64		count;
	uint64		status = 0;
	int			inline_words = 0;

	f->nfields = 0;
	if (len < 2 || b[0] != 2)
		goto opaque;
	take_fixed(&c, 1, NULL);
	take_fixed(&c, 1, &flags);
	if ((flags & 0x80) && !take_varint(&c, NULL))
		goto opaque;
	/* sensors: runs of (gap, count) and a 16-bit value each */
	if (!take_varint(&c, &runs) || runs > (uint64) len)
		goto opaque;
	for (uint64 r = 0; r < runs; r++)
	{
		if (!take_varint(&c, NULL) || !take_varint(&c, &count) || count > (uint64) (c.end - c.p) / 2)
			goto opaque;
		for (uint64 k = 0; k < count; k++)
			take_fixed(&c, 2, NULL);
	}
	/* fans: runs, and rpm, speed, target and status each */
	if (!take_varint(&c, &runs) || runs > (uint64) len)
		goto opaque;
	for (uint64 r = 0; r < runs; r++)
	{
		if (!take_varint(&c, NULL) || !take_varint(&c, &count) || count > (uint64) (c.end - c.p) / 8)
			goto opaque;
		for (uint64 k = 0; k < count; k++)
		{
			take_fixed(&c, 3, NULL);
			take_fixed(&c, 2, NULL);
			take_fixed(&c, 2, NULL);
			take_fixed(&c, 1, &status);
			if (status == PK_STATUS_INLINE)
				inline_words++;
		}
	}
	for (int h = 0; h < PK_H_NFIELDS; h++)
		if ((flags & (1u << h)) &&
			!(h == PK_H_NET_RX || h == PK_H_NET_TX || h == PK_H_LOAD1 ?
			  take_float(&c) : take_fixed(&c, health_width[h], NULL)))
			goto opaque;
	/* status words: a length byte and the word's bytes */
	for (int w = 0; w < inline_words; w++)
	{
		uint64		n;

		if (!take_fixed(&c, 1, &n) || n > (uint64) (c.end - c.p))
			goto opaque;
		for (uint64 k = 0; k < n; k++)
			take_fixed(&c, 1, NULL);
	}
	if (c.p == c.end)
		return;
opaque:
	f->nfields = -1;
}

/* Mask of a field type's values. */
static inline uint64
field_mask(int type)
{
	return type >= F_VARINT ? ~(uint64) 0 : (((uint64) 1 << (8 * type)) - 1);
}

/* A field's change as a signed number (the type's width, sign-extended). */
static inline int64
field_signed(uint64 d, int type)
{
	int			bits = type >= F_VARINT ? 64 : 8 * type;

	if (bits == 64)
		return (int64) d;
	d &= field_mask(type);
	return (d & ((uint64) 1 << (bits - 1))) ? (int64) (d | ~field_mask(type)) : (int64) d;
}

/* Whether frames a and b were cut into the same fields. */
static bool
same_fields(const ColdFields *a, const ColdFields *b)
{
	return a->nfields >= 0 && a->nfields == b->nfields &&
		memcmp(a->types, b->types, a->nfields) == 0;
}

/* Write a segment of count frames cut alike, from fr[0], field by field. */
static void
put_segment(StringInfo body, ColdFields *fr, int count)
{
	int			nf = fr[0].nfields;
	int64	   *stream = palloc(sizeof(int64) * count);
	uint64		g;

	put_varint(body, count);
	put_varint(body, nf);
	for (int k = 0; k < nf; k++)
		appendStringInfoChar(body, (char) fr[0].types[k]);
	for (int k = 0; k < nf; k++)
	{
		int			type = fr[0].types[k];
		uint64		by_delta = 0;
		uint64		by_dod = 0;
		bool		dod;
		uint64		prev = 0;
		int64		prev_d = 0;

		for (int i = 0; i < count; i++)
		{
			int64		d = field_signed(fr[i].values[k] - prev, type);

			by_delta += varint_len(zigzag(d));
			by_dod += varint_len(zigzag((int64) ((uint64) d - (uint64) prev_d)));
			prev = fr[i].values[k];
			prev_d = d;
		}
		dod = by_dod < by_delta;
		appendStringInfoChar(body, dod ? 1 : 0);
		/* the stream, then its greatest common divisor */
		prev = 0;
		prev_d = 0;
		for (int i = 0; i < count; i++)
		{
			int64		d = field_signed(fr[i].values[k] - prev, type);

			stream[i] = dod ? (int64) ((uint64) d - (uint64) prev_d) : d;
			prev = fr[i].values[k];
			prev_d = d;
		}
		g = 0;
		for (int i = 0; i < count && g != 1; i++)
		{
			uint64		a = stream[i] < 0 ? -(uint64) stream[i] : (uint64) stream[i];

			while (a != 0)
			{
				uint64		t = g % a;

				g = a;
				a = t;
			}
		}
		if (g == 0 || g > (uint64) PG_INT64_MAX)
			g = 1;
		put_varint(body, g);
		for (int i = 0; i < count; i++)
			put_varint(body, zigzag(stream[i] / (int64) g));
	}
	pfree(stream);
}

/*
 * pankha.cold_pack(ts timestamptz[], received_at timestamptz[], payload bytea[])
 * → the block holding those frames, in the order given.
 */
Datum
pankha_cold_pack(PG_FUNCTION_ARGS)
{
	Datum	   *ts_d;
	Datum	   *rx_d;
	Datum	   *pl_d;
	int			n = array_arg(PG_GETARG_ARRAYTYPE_P(0), TIMESTAMPTZOID, &ts_d, "ts");
	int			nrx = array_arg(PG_GETARG_ARRAYTYPE_P(1), TIMESTAMPTZOID, &rx_d, "received_at");
	int			npl = array_arg(PG_GETARG_ARRAYTYPE_P(2), BYTEAOID, &pl_d, "payload");
	StringInfoData body;
	int64		scale = 1000;
	int64		prev_ts = 0;
	int64		prev_step = 0;
	const unsigned char **bytes;
	int		   *lens;
	Size		total = 0;
	ColdFields *fr;
	unsigned char *types;
	uint64	   *values;
	size_t		bound;
	size_t		zlen;
	bytea	   *out;
	StringInfoData head;

	if (nrx != n || npl != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ts, received_at and payload must have as many elements"),
				 errdetail("They have %d, %d and %d.", n, nrx, npl)));
	if (n > COLD_MAX_FRAMES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a cold block holds at most %d frames", COLD_MAX_FRAMES)));

	bytes = palloc(sizeof(*bytes) * (n + 1));
	lens = palloc(sizeof(*lens) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		bytea	   *b = DatumGetByteaPP(pl_d[i]);

		bytes[i] = (const unsigned char *) VARDATA_ANY(b);
		lens[i] = VARSIZE_ANY_EXHDR(b);
		total += lens[i];
		if (DatumGetTimestampTz(ts_d[i]) % 1000 != 0)
			scale = 1;
	}

	initStringInfo(&body);
	put_varint(&body, scale);
	for (int i = 0; i < n; i++)
	{
		int64		t = DatumGetTimestampTz(ts_d[i]);

		if (i == 0)
			put_varint(&body, zigzag(t / scale));
		else
		{
			int64		step = (t - prev_ts) / scale;

			put_varint(&body, zigzag(step - prev_step));
			prev_step = step;
		}
		prev_ts = t;
	}
	/*
	 * Receive times: as their distance from the frame time (frames sent
	 * live arrive a network hop later), or as the change from the previous
	 * receive time (frames sent together arrive together), whichever is
	 * smaller for these frames.
	 */
	{
		uint64		by_offset = 0;
		uint64		by_delta = 0;
		bool		delta;

		for (int i = 0; i < n; i++)
		{
			int64		rx = DatumGetTimestampTz(rx_d[i]);

			by_offset += varint_len(zigzag(rx - DatumGetTimestampTz(ts_d[i])));
			by_delta += varint_len(zigzag(i == 0 ? rx : rx - DatumGetTimestampTz(rx_d[i - 1])));
		}
		delta = by_delta < by_offset;
		put_varint(&body, delta ? 1 : 0);
		for (int i = 0; i < n; i++)
		{
			int64		rx = DatumGetTimestampTz(rx_d[i]);

			if (!delta)
				put_varint(&body, zigzag(rx - DatumGetTimestampTz(ts_d[i])));
			else
				put_varint(&body, zigzag(i == 0 ? rx : rx - DatumGetTimestampTz(rx_d[i - 1])));
		}
	}

	/* payloads: cut into fields, then segment by segment */
	fr = palloc(sizeof(ColdFields) * (n + 1));
	types = MemoryContextAllocHuge(CurrentMemoryContext, total + 1);
	values = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint64) * (total + 1));
	for (int i = 0, at = 0; i < n; i++)
	{
		fr[i].types = types + at;
		fr[i].values = values + at;
		cut_fields(bytes[i], lens[i], &fr[i]);
		at += lens[i];
	}
	for (int i = 0; i < n;)
	{
		int			j = i + 1;

		if (fr[i].nfields < 0)
		{
			while (j < n && fr[j].nfields < 0)
				j++;
			put_varint(&body, j - i);
			put_varint(&body, 0);
			for (int k = i; k < j; k++)
				put_varint(&body, lens[k]);
			for (int k = i; k < j; k++)
				appendBinaryStringInfo(&body, (const char *) bytes[k], lens[k]);
		}
		else
		{
			while (j < n && same_fields(&fr[i], &fr[j]))
				j++;
			put_segment(&body, fr + i, j - i);
		}
		i = j;
	}

	initStringInfo(&head);
	appendStringInfoChar(&head, COLD_VERSION);
	put_varint(&head, n);
	put_varint(&head, body.len);

	bound = ZSTD_compressBound(body.len);
	out = palloc(VARHDRSZ + head.len + bound);
	memcpy(VARDATA(out), head.data, head.len);
	zlen = ZSTD_compress(VARDATA(out) + head.len, bound, body.data, body.len, COLD_ZSTD_LEVEL);
	if (ZSTD_isError(zlen))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress a cold block: %s", ZSTD_getErrorName(zlen))));
	SET_VARSIZE(out, VARHDRSZ + head.len + zlen);
	PG_RETURN_BYTEA_P(out);
}

/* A block's frames, unpacked. */
typedef struct ColdFrames
{
	int			n;
	int64	   *ts;
	int64	   *rx;
	bytea	  **payloads;
} ColdFrames;

/* Version 1 payloads: byte j of each, less the previous frame's. */
static void
unpack_bytes(const unsigned char **pp, const unsigned char *end, ColdFrames *cf)
{
	const unsigned char *p = *pp;
	int		   *lens = palloc(sizeof(int) * (cf->n + 1));
	int			maxlen = 0;
	int64		total = 0;

	for (int i = 0; i < cf->n; i++)
	{
		int64		len = (i == 0 ? 0 : lens[i - 1]) + unzigzag(get_varint(&p, end, "length stream"));

		if (len < 0 || len > (int64) (MaxAllocSize / 2))
			corrupt("length stream");
		lens[i] = (int) len;
		total += len;
		if (lens[i] > maxlen)
			maxlen = lens[i];
	}
	if (end - p != total)
		corrupt("payload columns");
	for (int i = 0; i < cf->n; i++)
	{
		cf->payloads[i] = palloc(VARHDRSZ + lens[i]);
		SET_VARSIZE(cf->payloads[i], VARHDRSZ + lens[i]);
	}
	for (int j = 0; j < maxlen; j++)
		for (int i = 0; i < cf->n; i++)
		{
			unsigned char b;

			if (j >= lens[i])
				continue;
			b = *p++;
			if (i > 0 && j < lens[i - 1])
				b = (unsigned char) (b + ((unsigned char *) VARDATA(cf->payloads[i - 1]))[j]);
			((unsigned char *) VARDATA(cf->payloads[i]))[j] = b;
		}
	*pp = p;
}

/* Version 2 payloads: segment by segment. */
static void
unpack_fields(const unsigned char **pp, const unsigned char *end, ColdFrames *cf)
{
	const unsigned char *p = *pp;
	int			i = 0;

	while (i < cf->n)
	{
		uint64		count = get_varint(&p, end, "segment");
		uint64		nf = get_varint(&p, end, "segment");

		if (count == 0 || count > (uint64) (cf->n - i) || nf > (uint64) (end - p))
			corrupt("segment");
		if (nf == 0)
		{
			uint64	   *lens = palloc(sizeof(uint64) * count);

			for (uint64 k = 0; k < count; k++)
				if ((lens[k] = get_varint(&p, end, "payload length")) > (uint64) (end - p))
					corrupt("payload length");
			for (uint64 k = 0; k < count; k++)
			{
				bytea	   *b;

				if (lens[k] > (uint64) (end - p))
					corrupt("payload bytes");
				b = palloc(VARHDRSZ + lens[k]);
				SET_VARSIZE(b, VARHDRSZ + lens[k]);
				memcpy(VARDATA(b), p, lens[k]);
				p += lens[k];
				cf->payloads[i + k] = b;
			}
			pfree(lens);
		}
		else
		{
			const unsigned char *types = p;
			uint64	   *vals;
			Size	   *lens;

			p += nf;
			/* every value takes a byte at least */
			if (count * nf > (uint64) (end - p))
				corrupt("segment");
			vals = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint64) * count * nf);
			lens = palloc0(sizeof(Size) * count);
			for (uint64 k = 0; k < nf; k++)
			{
				int			type = types[k];
				int			mode;
				uint64		g;
				uint64		prev = 0;
				uint64		prev_d = 0;

				if (type < 1 || type > F_FLOAT)
					corrupt("field type");
				if (p >= end || *p > 1)
					corrupt("field mode");
				mode = *p++;
				g = get_varint(&p, end, "field divisor");
				if (g == 0 || g > (uint64) PG_INT64_MAX)
					corrupt("field divisor");
				for (uint64 f = 0; f < count; f++)
				{
					uint64		v = (uint64) unzigzag(get_varint(&p, end, "field values")) * g;
					uint64		d = mode ? (uint64) field_signed(prev_d, type) + v : v;

					prev = (prev + d) & field_mask(type);
					if (type == F_VARINT && (prev >> 63))
						corrupt("field values");
					prev_d = d & field_mask(type);
					vals[f * nf + k] = prev;
					lens[f] += type == F_VARINT ? varint_len(prev) : type == F_FLOAT ? 4 : type;
				}
			}
			for (uint64 f = 0; f < count; f++)
			{
				bytea	   *b;
				unsigned char *w;

				if (lens[f] > MaxAllocSize - VARHDRSZ)
					corrupt("field values");
				b = palloc(VARHDRSZ + lens[f]);
				SET_VARSIZE(b, VARHDRSZ + lens[f]);
				w = (unsigned char *) VARDATA(b);
				for (uint64 k = 0; k < nf; k++)
				{
					uint64		v = vals[f * nf + k];

					if (types[k] == F_FLOAT)
					{
						uint32		bits;

						if (!float_bits(v, &bits))
							corrupt("field values");
						for (int j = 0; j < 4; j++)
							*w++ = (unsigned char) (bits >> (8 * j));
					}
					else if (types[k] == F_VARINT)
					{
						while (v >= 0x80)
						{
							*w++ = (unsigned char) ((v & 0x7f) | 0x80);
							v >>= 7;
						}
						*w++ = (unsigned char) v;
					}
					else
						for (int j = 0; j < types[k]; j++)
							*w++ = (unsigned char) (v >> (8 * j));
				}
				cf->payloads[i + f] = b;
			}
			pfree(vals);
			pfree(lens);
		}
		i += (int) count;
	}
	if (p != end)
		corrupt("payload segments");
	*pp = p;
}

/* Decompress and unpack a block made by pankha.cold_pack(). */
static void
cold_unpack(bytea *block, ColdFrames *cf)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(block);
	const unsigned char *end = p + VARSIZE_ANY_EXHDR(block);
	int			version;
	uint64		n;
	uint64		body_len;
	unsigned char *body;
	size_t		got;
	int64		scale;
	int64		step = 0;

	if (p >= end || (*p != COLD_VERSION && *p != COLD_VERSION_BYTES))
		corrupt("version byte");
	version = *p++;
	n = get_varint(&p, end, "frame count");
	body_len = get_varint(&p, end, "body length");
	if (n > COLD_MAX_FRAMES || body_len > MaxAllocSize || body_len < n * 3 + 2)
		corrupt("header");
	if (ZSTD_getFrameContentSize(p, end - p) != body_len)
		corrupt("compressed body");
	body = palloc(body_len + 1);
	got = ZSTD_decompress(body, body_len, p, end - p);
	if (ZSTD_isError(got) || got != body_len)
		corrupt("compressed body");

	p = body;
	end = body + body_len;
	cf->n = (int) n;
	cf->ts = palloc(sizeof(int64) * (n + 1));
	cf->rx = palloc(sizeof(int64) * (n + 1));
	cf->payloads = palloc(sizeof(bytea *) * (n + 1));

	scale = (int64) get_varint(&p, end, "time scale");
	if (scale != 1 && scale != 1000)
		corrupt("time scale");
	for (uint64 i = 0; i < n; i++)
	{
		int64		v = unzigzag(get_varint(&p, end, "ts stream"));

		if (i == 0)
			cf->ts[i] = v * scale;
		else
		{
			step += v;
			cf->ts[i] = cf->ts[i - 1] + step * scale;
		}
	}
	{
		uint64		mode = get_varint(&p, end, "received_at mode");

		if (mode > 1)
			corrupt("received_at mode");
		for (uint64 i = 0; i < n; i++)
		{
			int64		v = unzigzag(get_varint(&p, end, "received_at stream"));

			if (mode == 0)
				cf->rx[i] = cf->ts[i] + v;
			else
				cf->rx[i] = i == 0 ? v : cf->rx[i - 1] + v;
		}
	}
	if (version == COLD_VERSION_BYTES)
		unpack_bytes(&p, end, cf);
	else
		unpack_fields(&p, end, cf);
	pfree(body);
}

/*
 * pankha.cold_frames(block bytea, from_ts, to_ts) → (ts, received_at,
 * payload) of each frame in the block with from_ts <= ts < to_ts, in the
 * order packed.
 */
Datum
pankha_cold_frames(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz from_ts = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz to_ts = PG_GETARG_TIMESTAMPTZ(2);
	ColdFrames	cf;

	cold_unpack(PG_GETARG_BYTEA_PP(0), &cf);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < cf.n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (cf.ts[i] < from_ts || cf.ts[i] >= to_ts)
			continue;
		values[0] = TimestampTzGetDatum(cf.ts[i]);
		values[1] = TimestampTzGetDatum(cf.rx[i]);
		values[2] = PointerGetDatum(cf.payloads[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * pankha.cold_series(block, from_ts, to_ts, kind, slot) → (ts, value) of
 * one series in the frames of the block with from_ts <= ts < to_ts, the
 * values pankha.payload_values() gives for that kind and slot (frames
 * without it give no row).
 */
Datum
pankha_cold_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz from_ts = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz to_ts = PG_GETARG_TIMESTAMPTZ(2);
	char		kind = PG_GETARG_CHAR(3);
	int			slot = PG_GETARG_INT16(4);
	/* payload_values' health slots, in pankha.health_metrics() order */
	static const int health_of_slot[] = {PK_H_CPU, PK_H_MEM, PK_H_DISK, PK_H_LOAD1,
	PK_H_NET_RX, PK_H_NET_TX};
	ColdFrames	cf;
	PkDecoded  *d = palloc(sizeof(PkDecoded));

	cold_unpack(PG_GETARG_BYTEA_PP(0), &cf);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < cf.n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};
		bool		found = false;
		double		v = 0;

		if (cf.ts[i] < from_ts || cf.ts[i] >= to_ts)
			continue;
		if (!pk_decode_payload((const unsigned char *) VARDATA(cf.payloads[i]),
							   VARSIZE(cf.payloads[i]) - VARHDRSZ, d))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("malformed pankha payload"),
					 errdetail("The bytea is not a payload written by pankha.ingest().")));
		if (kind == 's')
		{
			for (int k = 0; k < d->nsensors && !found; k++)
				if (d->sensors[k].slot == slot)
				{
					v = (double) (float4) d->sensors[k].temperature;
					found = true;
				}
		}
		else if (kind == 'f')
		{
			for (int k = 0; k < d->nfans && !found; k++)
				if (d->fans[k].slot == slot)
				{
					v = (double) (int32) d->fans[k].rpm;
					found = true;
				}
		}
		else if (kind == 'h')
		{
			if (slot >= 0 && slot < (int) lengthof(health_of_slot) &&
				(d->health.present & (1u << health_of_slot[slot])))
			{
				int			h = health_of_slot[slot];

				v = d->health.value[h];
				if (h != PK_H_NET_RX && h != PK_H_NET_TX)
					v = (double) (float4) v;
				found = true;
			}
		}
		else if (kind == 'r' && slot == 0)
		{
			v = 1;
			found = true;
		}
		if (!found)
			continue;
		values[0] = TimestampTzGetDatum(cf.ts[i]);
		values[1] = Float8GetDatum(v);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Time filters on compressed frames.  The reading views read a compressed
 * frame as a row of pankha.cold_frames(c.packed) over a row c of
 * pankha.frames_cold; a condition such as ts >= X on that frame is pushed
 * down to the function, which can only apply it after unpacking every
 * block.  Every frame of a row has hour <= first_ts <= ts <= last_ts <
 * hour + 1 hour (the table's checks and the pass), so the hook adds, for
 * ts > X or ts >= X: last_ts > X (>=) and hour > X - 1 hour; for ts < Y or
 * ts <= Y: first_ts < Y (<=) and hour < Y (<=); both for ts = X.  The hour
 * conditions use the indexes on hour; then c's paths are made again.
 */
static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

static Oid	cold_frames_oid = InvalidOid;
static Oid	frames_cold_oid = InvalidOid;

/* The oids of pankha.cold_frames() and pankha.frames_cold, looked up once. */
static bool
cold_oids(void)
{
	if (!OidIsValid(frames_cold_oid))
	{
		Oid			nsp = get_namespace_oid("pankha", true);
		Oid			argtypes[3] = {BYTEAOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
		Oid			rel;
		Oid			fn;

		if (!OidIsValid(nsp))
			return false;
		rel = get_relname_relid("frames_cold", nsp);
		fn = LookupFuncName(list_make2(makeString("pankha"), makeString("cold_frames")),
							3, argtypes, true);
		if (!OidIsValid(rel) || !OidIsValid(fn))
			return false;
		cold_frames_oid = fn;
		frames_cold_oid = rel;
	}
	return true;
}

/* The extension's objects may be dropped and made again: forget their oids. */
static void
cold_forget_oids(Datum arg, int cacheid, uint32 hashvalue)
{
	cold_frames_oid = InvalidOid;
	frames_cold_oid = InvalidOid;
}

/* A column of c (rti) as a timestamptz Var. */
static Expr *
cold_column(Index rti, Oid relid, const char *name)
{
	return (Expr *) makeVar(rti, get_attnum(relid, name), TIMESTAMPTZOID, -1, InvalidOid, 0);
}

/* The operator of a strategy in a timestamptz btree family; col op x as a clause. */
static Expr *
cold_clause(Oid opfamily, int strategy, Expr *col, Expr *x)
{
	Oid			opno = get_opfamily_member(opfamily, TIMESTAMPTZOID, TIMESTAMPTZOID, strategy);
	OpExpr	   *op;

	if (!OidIsValid(opno))
		return NULL;
	op = (OpExpr *) make_opclause(opno, BOOLOID, false, col, (Expr *) copyObject(x),
								  InvalidOid, InvalidOid);
	set_opfuncid(op);
	return (Expr *) op;
}

/* x - 1 hour. */
static Expr *
cold_hour_before(Expr *x)
{
	Oid			minus = LookupOperName(NULL, list_make2(makeString("pg_catalog"), makeString("-")),
									   TIMESTAMPTZOID, INTERVALOID, true, -1);
	Interval   *hour = palloc0(sizeof(Interval));
	OpExpr	   *op;

	if (!OidIsValid(minus))
		return NULL;
	hour->time = USECS_PER_HOUR;
	op = (OpExpr *) make_opclause(minus, TIMESTAMPTZOID, false, (Expr *) copyObject(x),
								  (Expr *) makeConst(INTERVALOID, -1, InvalidOid, sizeof(Interval),
													 PointerGetDatum(hour), false, false),
								  InvalidOid, InvalidOid);
	set_opfuncid(op);
	return (Expr *) op;
}

/*
 * The conditions on c (rti) that follow from a condition on the ts of its
 * frames (ri, on the function's relation), appended to *added.
 */
static void
cold_derive(Index rti, RestrictInfo *ri, List **added)
{
	OpExpr	   *op = (OpExpr *) ri->clause;
	Expr	   *x;
	bool		var_left;
	ListCell   *lc;

	if (!IsA(op, OpExpr) || list_length(op->args) != 2 ||
		exprType(linitial(op->args)) != TIMESTAMPTZOID ||
		exprType(lsecond(op->args)) != TIMESTAMPTZOID)
		return;
	if (IsA(linitial(op->args), Var) && ((Var *) linitial(op->args))->varattno == 1)
	{
		var_left = true;
		x = lsecond(op->args);
	}
	else if (IsA(lsecond(op->args), Var) && ((Var *) lsecond(op->args))->varattno == 1)
	{
		var_left = false;
		x = linitial(op->args);
	}
	else
		return;
	/* X: a value known before the scan */
	if (contain_var_clause((Node *) x) || contain_volatile_functions((Node *) x) ||
		contain_subplans((Node *) x))
		return;

	foreach(lc, get_op_btree_interpretation(op->opno))
	{
		OpBtreeInterpretation *bi = lfirst(lc);
		int			strategy = bi->strategy;
		Oid			relid = frames_cold_oid;
		List	   *clauses = NIL;

		if (bi->oplefttype != TIMESTAMPTZOID || bi->oprighttype != TIMESTAMPTZOID)
			continue;
		if (!var_left)			/* X op ts: ts op' X */
			strategy = strategy == BTLessStrategyNumber ? BTGreaterStrategyNumber :
				strategy == BTLessEqualStrategyNumber ? BTGreaterEqualStrategyNumber :
				strategy == BTGreaterStrategyNumber ? BTLessStrategyNumber :
				strategy == BTGreaterEqualStrategyNumber ? BTLessEqualStrategyNumber : strategy;
		if (strategy == BTGreaterStrategyNumber || strategy == BTGreaterEqualStrategyNumber ||
			strategy == BTEqualStrategyNumber)
		{
			clauses = lappend(clauses,
							  cold_clause(bi->opfamily_id,
										  strategy == BTGreaterStrategyNumber ? strategy : BTGreaterEqualStrategyNumber,
										  cold_column(rti, relid, "last_ts"), x));
			clauses = lappend(clauses,
							  cold_clause(bi->opfamily_id, BTGreaterStrategyNumber,
										  cold_column(rti, relid, "hour"), cold_hour_before(x)));
		}
		if (strategy == BTLessStrategyNumber || strategy == BTLessEqualStrategyNumber ||
			strategy == BTEqualStrategyNumber)
		{
			int			s = strategy == BTLessStrategyNumber ? strategy : BTLessEqualStrategyNumber;

			clauses = lappend(clauses, cold_clause(bi->opfamily_id, s, cold_column(rti, relid, "first_ts"), x));
			clauses = lappend(clauses, cold_clause(bi->opfamily_id, s, cold_column(rti, relid, "hour"), x));
		}
		for (int i = 0; i < list_length(clauses); i++)
		{
			Expr	   *clause = list_nth(clauses, i);

			if (clause == NULL)
				continue;
			*added = lappend(*added,
							 make_restrictinfo(NULL, clause, true, false, false,
											   ri->security_level, bms_make_singleton(rti),
											   NULL, NULL));
		}
		return;
	}
}

/* set_rel_pathlist_hook: pankha.frames_cold read with its frames. */
static void
cold_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte)
{
	List	   *added = NIL;

	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);
	if (rel->reloptkind != RELOPT_BASEREL || rte->rtekind != RTE_RELATION ||
		!IsTransactionState() || !cold_oids() || rte->relid != frames_cold_oid)
		return;

	for (int i = 1; i < root->simple_rel_array_size; i++)
	{
		RelOptInfo *frel = root->simple_rel_array[i];
		RangeTblEntry *frte = root->simple_rte_array[i];
		RangeTblFunction *rtf;
		FuncExpr   *fe;
		Var		   *arg;
		ListCell   *lc;

		if (frel == NULL || frte == NULL || frte->rtekind != RTE_FUNCTION ||
			list_length(frte->functions) != 1 || frte->funcordinality)
			continue;
		rtf = linitial(frte->functions);
		fe = (FuncExpr *) rtf->funcexpr;
		if (!IsA(fe, FuncExpr) || fe->funcid != cold_frames_oid || list_length(fe->args) < 1)
			continue;
		arg = linitial(fe->args);
		if (!IsA(arg, Var) || arg->varno != (int) rti || arg->varlevelsup != 0 ||
			arg->varattno != get_attnum(frames_cold_oid, "packed"))
			continue;
		foreach(lc, frel->baserestrictinfo)
		{
			RestrictInfo *ri = lfirst(lc);
			Var		   *v;

			/* only conditions on this function's ts (its column 1) */
			if (!IsA(ri->clause, OpExpr))
				continue;
			v = IsA(linitial(((OpExpr *) ri->clause)->args), Var) ?
				linitial(((OpExpr *) ri->clause)->args) : NULL;
			if (v == NULL && list_length(((OpExpr *) ri->clause)->args) == 2 &&
				IsA(lsecond(((OpExpr *) ri->clause)->args), Var))
				v = lsecond(((OpExpr *) ri->clause)->args);
			if (v == NULL || v->varno != i || v->varlevelsup != 0)
				continue;
			cold_derive(rti, ri, &added);
		}
	}
	if (added == NIL)
		return;

	/* c's size and paths again, with the added conditions */
	rel->baserestrictinfo = list_concat_copy(rel->baserestrictinfo, added);
	check_index_predicates(root, rel);
	set_baserel_size_estimates(root, rel);
	rel->pathlist = NIL;
	rel->partial_pathlist = NIL;
	rel->cheapest_startup_path = NULL;
	rel->cheapest_total_path = NULL;
	rel->cheapest_unique_path = NULL;
	rel->cheapest_parameterized_paths = NIL;
	add_path(rel, create_seqscan_path(root, rel, rel->lateral_relids, 0));
	create_index_paths(root, rel);
	create_tidscan_paths(root, rel);
}

/* Install the planner hook (from _PG_init). */
void
pankha_cold_planner_init(void)
{
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = cold_rel_pathlist;
	CacheRegisterSyscacheCallback(NAMESPACEOID, cold_forget_oids, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, cold_forget_oids, (Datum) 0);
}
