/*-------------------------------------------------------------------------
 *
 * liveness.c
 *	  When each agent was last heard from, kept in shared memory.
 *
 * Updating a pankha.agents row per frame would turn every ingest into an
 * UPDATE and a dead tuple.  Instead ingest notes the time here, under one
 * LWLock taken once per batch, and the background worker persists the
 * changed entries with pankha.flush_liveness() every few seconds.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pankha_agent_liveness);
PG_FUNCTION_INFO_V1(pankha_flush_liveness);
PG_FUNCTION_INFO_V1(pankha_catalog_changed);
PG_FUNCTION_INFO_V1(pankha_stats);

/* Shared memory the liveness hash needs. */
Size
pankha_liveness_shmem_size(void)
{
	return hash_estimate_size(pankha_max_agents, sizeof(PankhaLiveness));
}

/*
 * Note that a frame from agent_id was stored.  Returns false when the hash
 * is full, and the caller then records liveness the slow way.
 */
bool
pankha_note_frame(const char *agent_id, TimestampTz frame_ts, TimestampTz now)
{
	PankhaLiveness *entry;
	char		key[sizeof(entry->agent_id)];

	memset(key, 0, sizeof(key));
	strlcpy(key, agent_id, sizeof(key));

	entry = hash_search(pankha_liveness, key, HASH_ENTER_NULL, NULL);
	if (entry == NULL)
		return false;
	if (entry->frames == 0 && entry->last_seen == 0)
		entry->last_frame = frame_ts;
	entry->last_seen = now;
	if (frame_ts > entry->last_frame)
		entry->last_frame = frame_ts;
	entry->frames++;
	entry->dirty = true;
	return true;
}

/* pankha.agent_liveness(): the shared-memory table, for views and tests. */
Datum
pankha_agent_liveness(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	PankhaLiveness *entry;

	pankha_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(pankha_shared->lock, LW_SHARED);
	hash_seq_init(&status, pankha_liveness);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(entry->agent_id);
		values[1] = TimestampTzGetDatum(entry->last_seen);
		values[2] = TimestampTzGetDatum(entry->last_frame);
		values[3] = Int64GetDatum((int64) entry->frames);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pankha_shared->lock);

	return (Datum) 0;
}

/*
 * pankha.flush_liveness(): write changed last_seen times into pankha.agents
 * and return how many agents were updated.
 */
Datum
pankha_flush_liveness(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS status;
	PankhaLiveness *entry;
	Datum	   *ids;
	Datum	   *times;
	int			n = 0;
	int			capacity = 64;
	int			updated = 0;

	pankha_require_preload();

	ids = palloc(sizeof(Datum) * capacity);
	times = palloc(sizeof(Datum) * capacity);

	LWLockAcquire(pankha_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, pankha_liveness);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (!entry->dirty)
			continue;
		if (n == capacity)
		{
			capacity *= 2;
			ids = repalloc(ids, sizeof(Datum) * capacity);
			times = repalloc(times, sizeof(Datum) * capacity);
		}
		ids[n] = CStringGetTextDatum(entry->agent_id);
		times[n] = TimestampTzGetDatum(entry->last_seen);
		n++;
	}
	LWLockRelease(pankha_shared->lock);

	if (n > 0)
	{
		Oid			argtypes[2] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		args[2];
		int			ret;

		args[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
		args[1] = PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		SPI_connect();
		ret = SPI_execute_with_args(
			"UPDATE pankha.agents a SET last_seen = v.ts "
			"FROM unnest($1, $2) AS v(agent_id, ts) "
			"WHERE a.agent_id = v.agent_id "
			"AND (a.last_seen IS NULL OR a.last_seen < v.ts)",
			2, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not persist agent liveness: %s", SPI_result_code_string(ret));
		updated = (int) SPI_processed;
		SPI_finish();

		/*
		 * Only now that the UPDATE went through are the entries clean: a
		 * caller whose UPDATE fails (no privilege on pankha.agents, a lock
		 * timeout) must leave them for the next flush, or agents that are
		 * talking would look silent to the offline check.  An entry whose
		 * time moved on meanwhile stays dirty for its newer time.
		 */
		LWLockAcquire(pankha_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < n; i++)
		{
			char		key[sizeof(entry->agent_id)];

			memset(key, 0, sizeof(key));
			text_to_cstring_buffer(DatumGetTextPP(ids[i]), key, sizeof(key));
			entry = hash_search(pankha_liveness, key, HASH_FIND, NULL);
			if (entry && entry->last_seen == DatumGetTimestampTz(times[i]))
				entry->dirty = false;
		}
		LWLockRelease(pankha_shared->lock);
	}

	PG_RETURN_INT32(updated);
}

/*
 * Trigger function: catalog rows were deleted or re-slotted, so every
 * backend's ingest cache must be rebuilt before its next frame.
 */
Datum
pankha_catalog_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pankha._catalog_changed() must be called as a trigger")));
	if (pankha_shared)
		pg_atomic_fetch_add_u64(&pankha_shared->catalog_generation, 1);
	return PointerGetDatum(NULL);
}

/* pankha.ingest_stats(): counters since server start. */
Datum
pankha_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	long		agents;

	pankha_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(pankha_shared->lock, LW_SHARED);
	agents = hash_get_num_entries(pankha_liveness);
	LWLockRelease(pankha_shared->lock);

	values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&pankha_shared->frames_stored));
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&pankha_shared->frames_rejected));
	values[2] = Int64GetDatum((int64) agents);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
