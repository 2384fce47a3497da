/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  SQL functions that unpack the compact payload of pankha.readings.
 *
 * The views pankha.sensor_readings, pankha.fan_readings, pankha.health_readings
 * and pankha.latest are built on these; people rarely call them directly.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "validate.h"

PG_FUNCTION_INFO_V1(pankha_decode_temperatures);
PG_FUNCTION_INFO_V1(pankha_decode_fans);
PG_FUNCTION_INFO_V1(pankha_decode_health);
PG_FUNCTION_INFO_V1(pankha_decode_seq);

/* Decode a payload argument or raise a data-corruption error. */
static void
decode_arg(bytea *payload, PkDecoded *d)
{
	if (!pk_decode_payload((const unsigned char *) VARDATA_ANY(payload),
						   VARSIZE_ANY_EXHDR(payload), d))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("malformed pankha payload"),
				 errdetail("The bytea is not a payload written by pankha.ingest().")));
}

/* pankha.decode_temperatures(payload) → (slot, temperature) per sensor it carries. */
Datum
pankha_decode_temperatures(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PkDecoded	decoded;
	PkDecoded  *d = &decoded;

	decode_arg(PG_GETARG_BYTEA_PP(0), d);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < d->nsensors; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int16GetDatum((int16) d->sensors[i].slot);
		values[1] = Float4GetDatum((float4) d->sensors[i].temperature);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* pankha.decode_fans(payload) → (slot, rpm, speed, target_speed, status) per fan it carries. */
Datum
pankha_decode_fans(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PkDecoded	decoded;
	PkDecoded  *d = &decoded;

	decode_arg(PG_GETARG_BYTEA_PP(0), d);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < d->nfans; i++)
	{
		const PkDecodedFan *f = &d->fans[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int16GetDatum((int16) f->slot);
		values[1] = Int32GetDatum((int32) f->rpm);
		values[2] = Float4GetDatum((float4) f->speed);
		nulls[2] = !f->has_speed;
		values[3] = Float4GetDatum((float4) f->target);
		nulls[3] = !f->has_target;
		if (f->word)
			values[4] = PointerGetDatum(cstring_to_text_with_len(f->word, f->word_len));
		else
		{
			const char *word = f->status < 0 ? NULL : pankha_fan_status_name(f->status);

			nulls[4] = word == NULL;
			values[4] = word ? CStringGetTextDatum(word) : (Datum) 0;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* pankha.decode_health(payload) → one row of system-health values (nulls when absent). */
Datum
pankha_decode_health(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	PkDecoded	decoded;
	PkDecoded  *d = &decoded;
	Datum		values[PK_H_NFIELDS];
	bool		nulls[PK_H_NFIELDS];

	decode_arg(PG_GETARG_BYTEA_PP(0), d);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	for (int f = 0; f < PK_H_NFIELDS; f++)
	{
		double		v = d->health.value[f];

		nulls[f] = !(d->health.present & (1u << f));
		if (nulls[f])
			values[f] = (Datum) 0;
		else if (f == PK_H_UPTIME)
			values[f] = Int64GetDatum((int64) v);
		else if (f == PK_H_NET_RX || f == PK_H_NET_TX)
			values[f] = Float8GetDatum(v);
		else
			values[f] = Float4GetDatum((float4) v);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* pankha.decode_seq(payload) → the frame's seq, or null when it had none. */
Datum
pankha_decode_seq(PG_FUNCTION_ARGS)
{
	PkDecoded	decoded;
	PkDecoded  *d = &decoded;

	decode_arg(PG_GETARG_BYTEA_PP(0), d);
	if (!d->has_seq)
		PG_RETURN_NULL();
	PG_RETURN_INT64(d->seq);
}
