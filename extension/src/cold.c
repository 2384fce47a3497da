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
 * The block does not interpret payloads: it lays them out column-wise.
 * Byte j of every payload is stored next to byte j of the others, as the
 * difference (mod 256) from byte j of the previous frame.  Consecutive
 * frames of an agent have the same layout and slowly changing values, so
 * the columns are mostly zeros and small numbers, which zstd then
 * squeezes.  Times are stored as zigzag varints: the frame time as the
 * change of its step (delta of delta, in milliseconds when every time is a
 * whole millisecond), the receive time as its distance from the frame
 * time or as its change (whichever is smaller for the block), the payload
 * length as its change.
 *
 * Block:  byte 1 (version) | varint frames | varint body bytes | zstd(body)
 * Body:   varint scale | ts stream | varint received_at mode
 *         | received_at stream | length stream
 *         | payload columns
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include <zstd.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pankha_cold_pack);
PG_FUNCTION_INFO_V1(pankha_cold_frames);

#define COLD_VERSION	1
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
	int			prev_len = 0;
	int			maxlen = 0;
	const unsigned char **bytes;
	int		   *lens;
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
		if (lens[i] > maxlen)
			maxlen = lens[i];
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
	for (int i = 0; i < n; i++)
	{
		put_varint(&body, zigzag((int64) lens[i] - prev_len));
		prev_len = lens[i];
	}
	/* column j: byte j of each payload that has one, less the previous frame's */
	for (int j = 0; j < maxlen; j++)
		for (int i = 0; i < n; i++)
		{
			unsigned char b;

			if (j >= lens[i])
				continue;
			b = bytes[i][j];
			if (i > 0 && j < lens[i - 1])
				b = (unsigned char) (b - bytes[i - 1][j]);
			appendStringInfoChar(&body, (char) b);
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

/*
 * pankha.cold_frames(block bytea, from_ts, to_ts) → (ts, received_at,
 * payload) of each frame in the block with from_ts <= ts < to_ts, in the
 * order packed.
 */
Datum
pankha_cold_frames(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bytea	   *block = PG_GETARG_BYTEA_PP(0);
	TimestampTz from_ts = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz to_ts = PG_GETARG_TIMESTAMPTZ(2);
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(block);
	const unsigned char *end = p + VARSIZE_ANY_EXHDR(block);
	uint64		n;
	uint64		body_len;
	unsigned char *body;
	size_t		got;
	int64		scale;
	int64	   *ts;
	int64	   *rx;
	int		   *lens;
	int			maxlen = 0;
	int64		total = 0;
	bytea	  **payloads;
	int64		step = 0;

	if (p >= end || *p != COLD_VERSION)
		corrupt("version byte");
	p++;
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
	ts = palloc(sizeof(int64) * (n + 1));
	rx = palloc(sizeof(int64) * (n + 1));
	lens = palloc(sizeof(int) * (n + 1));
	payloads = palloc(sizeof(bytea *) * (n + 1));

	scale = (int64) get_varint(&p, end, "time scale");
	if (scale != 1 && scale != 1000)
		corrupt("time scale");
	for (uint64 i = 0; i < n; i++)
	{
		int64		v = unzigzag(get_varint(&p, end, "ts stream"));

		if (i == 0)
			ts[i] = v * scale;
		else
		{
			step += v;
			ts[i] = ts[i - 1] + step * scale;
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
				rx[i] = ts[i] + v;
			else
				rx[i] = i == 0 ? v : rx[i - 1] + v;
		}
	}
	for (uint64 i = 0; i < n; i++)
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
	for (uint64 i = 0; i < n; i++)
	{
		payloads[i] = palloc(VARHDRSZ + lens[i]);
		SET_VARSIZE(payloads[i], VARHDRSZ + lens[i]);
	}
	for (int j = 0; j < maxlen; j++)
		for (uint64 i = 0; i < n; i++)
		{
			unsigned char b;

			if (j >= lens[i])
				continue;
			b = *p++;
			if (i > 0 && j < lens[i - 1])
				b = (unsigned char) (b + ((unsigned char *) VARDATA(payloads[i - 1]))[j]);
			((unsigned char *) VARDATA(payloads[i]))[j] = b;
		}

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (ts[i] < from_ts || ts[i] >= to_ts)
			continue;
		values[0] = TimestampTzGetDatum(ts[i]);
		values[1] = TimestampTzGetDatum(rx[i]);
		values[2] = PointerGetDatum(payloads[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
