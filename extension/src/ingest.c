/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  pankha.ingest() and its batch forms: JSON frames in, compact rows out.
 *
 * A frame's JSON text (jsonb arguments are printed back to text) is parsed
 * once, by simdjson (json_fast.cpp) or else PostgreSQL's own JSON parser,
 * into the plain-C tree of validate.c, whose rules check it and fill a
 * PkError on the first problem.  Valid
 * frames get their sensors, fans and fan status words mapped to catalog
 * codes (cached per backend, with a fast path for an agent that repeats
 * its previous frame's layout), are encoded into one bytea payload, and are
 * inserted with a saved plan and ON CONFLICT DO NOTHING, so a re-sent
 * frame is stored once.
 *
 * The per-backend caches (catalog slots, status codes, partitions known to
 * exist) only ever hold committed facts or facts of the current
 * transaction; when a transaction or subtransaction that added to them
 * aborts, they are dropped, and when another backend deletes catalog rows
 * the shared catalog_generation counter tells us to drop them too.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "json_fast.h"
#include "json_pg.h"
#include "validate.h"

PG_FUNCTION_INFO_V1(pankha_ingest);
PG_FUNCTION_INFO_V1(pankha_ingest_batch);
PG_FUNCTION_INFO_V1(pankha_ingest_many);

/* Unix epoch in PostgreSQL's timestamp origin (2000-01-01), microseconds. */
#define UNIX_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* Cache key: one sensor or fan of one agent. */
typedef struct CatalogKey
{
	char		agent_id[PK_MAX_ID_BYTES + 1];
	char		kind;			/* 's' sensor, 'f' fan */
	char		id[PK_MAX_ID_BYTES + 1];
} CatalogKey;

typedef struct CatalogEntry
{
	CatalogKey	key;
	int			slot;
	/* sensor metadata as last recorded, to notice changes */
	char		sensor_kind[PK_MAX_KIND_BYTES + 1];
	bool		has_max;
	float4		max_temp;
	bool		has_crit;
	float4		crit_temp;
} CatalogEntry;

typedef struct AgentEntry
{
	char		agent_id[PK_MAX_ID_BYTES + 1];
	/* the previous frame's sensors then fans, in order: agents repeat them */
	int			nlast_sensors;
	int			nlast_fans;
	CatalogEntry **last;		/* PK_MAX_SENSORS + PK_MAX_FANS entries, or NULL */
	/* rows of this agent were stored ahead (agent_ts set): re-sends are looked up */
	bool		has_ahead;
} AgentEntry;

typedef struct StatusEntry
{
	char		word[PK_MAX_STATUS_BYTES + 1];
	int			code;
} StatusEntry;

/* One frame of a batch on its way to the table. */
typedef struct PendingFrame
{
	const char *agent_id;
	AgentEntry *agent;
	TimestampTz ts;				/* where the row goes: the claim, or a server time */
	TimestampTz claim;			/* the frame's own timestamp: its identity */
	TimestampTz agent_ts;		/* 0 unless the clock was in the future */
	bool		ahead;			/* more than 5 minutes ahead of the server */
	bytea	   *payload;
	bool		stored;
	bool		duplicate;		/* already stored, or earlier in the same call */
	bool		rejected;
	bool		deferred;		/* waits for its catalog additions */
	PkError		error;
} PendingFrame;

/* What assign_slots() did with a frame. */
typedef enum SlotResult
{
	SLOTS_ASSIGNED,				/* every id has its slot */
	SLOTS_DEFERRED,				/* new ids collected: prepare the frame again later */
	SLOTS_REFUSED				/* the agent has no slot left for an id */
} SlotResult;

/*
 * Sensors and fans on their way to pankha._catalog_add(), an element of
 * each array per id: those of one frame, or of all the frames of an
 * ingest_many call (an agent's first frames), which are then recorded
 * with one call.
 */
typedef struct CatalogAdds
{
	MemoryContext cxt;			/* where the arrays live */
	int			n;
	int			cap;
	Datum	   *agent_ids;
	Datum	   *kinds;
	Datum	   *ids;
	Datum	   *types;
	bool	   *type_nulls;
	Datum	   *maxes;
	bool	   *max_nulls;
	Datum	   *crits;
	bool	   *crit_nulls;
} CatalogAdds;

static MemoryContext cache_context = NULL;
static HTAB *catalog_cache = NULL;
static HTAB *agent_cache = NULL;
static HTAB *partition_cache = NULL;	/* days (int64) known to have a partition */
static HTAB *status_cache = NULL;	/* fan status word -> code */
static bool status_loaded = false;	/* status_cache holds the whole dictionary */
static char *status_names[PK_MAX_STATUS_CODE + 1];	/* code -> word, as loaded */
static uint64 cache_generation = 0;
static Oid	readings_oid = InvalidOid;	/* pankha.readings when the caches were filled */
static bool readings_changed = false;	/* its partitions (or itself) changed since */
static bool have_ahead_index = false;	/* partitions index agent_ts (not the 0.1.0 schema) */
static bool bump_on_commit = false; /* tell other backends an agent went ahead */
/*
 * The newest subtransaction in which the caches learnt something, or
 * InvalidSubTransactionId.  Only an abort of that subtransaction (or of one
 * of its ancestors) can make a cached fact false.  A subtransaction that
 * starts and aborts inside a call of ours (an exception block in some
 * trigger or function we run) is newer and cannot have taught us anything,
 * so it leaves the caches alone: they are in use at that moment.
 */
static SubTransactionId learned_in = InvalidSubTransactionId;
static bool callbacks_registered = false;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_one_plan = NULL;
/* While ingest_many prepares its frames: where catalog additions collect. */
static CatalogAdds *deferred_adds = NULL;

static bool sensor_changed(const CatalogEntry *ce, const PkSensor *s);
static void reset_caches(void);
static void ensure_caches(void);
static bool extension_is_0_1_0(void);
static void readings_inval_callback(Datum arg, Oid relid);
static void ingest_xact_callback(XactEvent event, void *arg);
static void ingest_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static void cache_catalog_rows(void);
static void load_agents(Datum *agent_ids, int n);
static void prefetch_agents(Datum *ids, bool *nulls, int n);
static AgentEntry *agent_registered(const char *agent_id);
static CatalogAdds *catalog_adds_new(MemoryContext cxt);
static void catalog_adds_flush(CatalogAdds *adds);
static SlotResult assign_slots(AgentEntry *agent, PkFrame *frame, PkError *err);
static void ensure_partition(TimestampTz ts);
static void store_frames(PendingFrame *frames, int n, TimestampTz now);
static uint64 insert_one(PendingFrame *pf, TimestampTz now);
static uint64 insert_many(PendingFrame **rows, Datum *agent_ids, Datum *tss,
						  Datum *agent_tss, bool *agent_ts_nulls, Datum *payloads, int nrows,
						  TimestampTz now);
static void raise_error(const PkError *err, const char *prefix);

/* --------------------------------------------------------------------------
 * Cache management
 * --------------------------------------------------------------------------
 */

/* Drop every cached fact; they are reloaded on demand. */
static void
reset_caches(void)
{
	if (cache_context)
		MemoryContextReset(cache_context);
	catalog_cache = NULL;
	agent_cache = NULL;
	partition_cache = NULL;
	status_cache = NULL;
	status_loaded = false;
	memset(status_names, 0, sizeof(status_names));
}

/* An empty cache of the days known to have a partition. */
static HTAB *
new_partition_cache(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.hcxt = cache_context;
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	return hash_create("pankha partition cache", 64, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Make sure the caches exist and are not stale. */
static void
ensure_caches(void)
{
	HASHCTL		ctl;
	uint64		generation;

	if (!callbacks_registered)
	{
		RegisterXactCallback(ingest_xact_callback, NULL);
		RegisterSubXactCallback(ingest_subxact_callback, NULL);
		CacheRegisterRelcacheCallback(readings_inval_callback, (Datum) 0);
		cache_context = AllocSetContextCreate(TopMemoryContext,
											  "pankha ingest cache",
											  ALLOCSET_DEFAULT_SIZES);
		callbacks_registered = true;
	}

	generation = pankha_shared ? pg_atomic_read_u64(&pankha_shared->catalog_generation) : 0;
	if (generation == cache_generation && readings_changed && partition_cache &&
		get_relname_relid("readings", get_namespace_oid("pankha", true)) == readings_oid)
	{
		/*
		 * A partition came or went (the worker adds one a day, retention
		 * drops them): only the partition cache can be wrong.  Keeping the
		 * catalog spares a large fleet a warm-up of every agent.
		 */
		hash_destroy(partition_cache);
		partition_cache = new_partition_cache();
		readings_changed = false;
	}
	if (generation != cache_generation || readings_changed)
	{
		reset_caches();
		cache_generation = generation;
		readings_changed = false;
	}
	if (catalog_cache)
		return;

	readings_oid = get_relname_relid("readings", get_namespace_oid("pankha", false));
	/* in a 0.1.0 schema a look-up by agent_ts would scan every row */
	have_ahead_index = !extension_is_0_1_0();

	memset(&ctl, 0, sizeof(ctl));
	ctl.hcxt = cache_context;
	ctl.keysize = sizeof(CatalogKey);
	ctl.entrysize = sizeof(CatalogEntry);
	catalog_cache = hash_create("pankha catalog cache", 1024, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = PK_MAX_ID_BYTES + 1;
	ctl.entrysize = sizeof(AgentEntry);
	agent_cache = hash_create("pankha agent cache", 256, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	partition_cache = new_partition_cache();
	ctl.keysize = PK_MAX_STATUS_BYTES + 1;
	ctl.entrysize = sizeof(StatusEntry);
	status_cache = hash_create("pankha fan status cache", 32, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Whether the installed pankha is still at 0.1.0 (the shared library was
 * replaced but ALTER EXTENSION pankha UPDATE has not run yet).  Since
 * 0.2.0 every partition of pankha.readings has a partial index on
 * (agent_id, agent_ts), which re-sends of frames from agents whose clock
 * is ahead are looked up by; 0.1.0 has none.
 */
static bool
extension_is_0_1_0(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		old = false;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("pankha"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		old = !isnull && strcmp(TextDatumGetCString(v), "0.1.0") == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return old;
}

/*
 * Relcache invalidation: a partition of pankha.readings was created or
 * dropped, or the extension itself was dropped.  Only note it here (the
 * caches may be in use); ensure_caches() starts afresh on the next call.
 */
static void
readings_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == readings_oid)
		readings_changed = true;
}

/* Note that the caches just learnt something in this subtransaction. */
static void
cache_learnt(void)
{
	SubTransactionId current = GetCurrentSubTransactionId();

	if (learned_in == InvalidSubTransactionId || current > learned_in)
		learned_in = current;
}

/* Facts learnt in an aborted transaction may be false: forget them. */
static void
ingest_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (learned_in != InvalidSubTransactionId)
			reset_caches();
		learned_in = InvalidSubTransactionId;
		bump_on_commit = false;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		learned_in = InvalidSubTransactionId;

		/*
		 * An agent's first rows stored ahead are committed: every backend
		 * must reload that agent (now marked has_ahead), or a re-send it
		 * receives would not be looked up.  Only after the commit, so that
		 * the reload sees the rows.  Our own caches know it already.
		 */
		if (bump_on_commit && pankha_shared)
		{
			uint64		old = pg_atomic_fetch_add_u64(&pankha_shared->catalog_generation, 1);

			if (old == cache_generation)
				cache_generation = old + 1;
		}
		bump_on_commit = false;
	}
}

/*
 * The same for a rolled-back savepoint around our calls (a bridge retrying
 * one frame); a committed one hands what it learnt to its parent.
 */
static void
ingest_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (learned_in == InvalidSubTransactionId || learned_in < mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		reset_caches();
		learned_in = InvalidSubTransactionId;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		learned_in = parentSubid;
}

/* --------------------------------------------------------------------------
 * Parsing: simdjson (json_fast.cpp) or PostgreSQL's parser (json_pg.c) feed
 * the plain-C tree of validate.c
 * --------------------------------------------------------------------------
 */

/* Node storage for PkJson, from the current memory context. */
static void *
grow_nodes(void *ptr, size_t size)
{
	return ptr ? repalloc(ptr, size) : palloc(size);
}

/*
 * simdjson's trees of up to FAST_NODES_KEPT nodes (a frame of hundreds of
 * sensors) are built in one array kept for the life of the backend rather
 * than allocated for each frame; like the strings they point to (which
 * lie in simdjson's parser), they are valid until the next parse.
 */
#define FAST_NODES_KEPT 4096
static PkJsonNode *fast_nodes = NULL;

static void *
no_grow(void *ptr, size_t size)
{
	return NULL;
}

/*
 * Parse JSON text into json; false with err (naming the input "what") when
 * it is not JSON or nests too deeply.
 */
static bool
parse_json(char *json_text, int len, PkJson *json, PkError *err, const char *what)
{
	/*
	 * simdjson first (UTF-8 databases: it reads only UTF-8); whatever it
	 * does not take, or yields what PostgreSQL's parser would refuse, goes
	 * to that parser, so the outcome and its wording are the same.
	 */
	if (GetDatabaseEncoding() == PG_UTF8)
	{
		int			nodes = pk_fast_parse(json_text, len);

		if (nodes > 0)
		{
			bool		reuse = nodes <= FAST_NODES_KEPT;

			pk_json_init(json, grow_nodes);
			if (reuse && fast_nodes == NULL)
				fast_nodes = MemoryContextAlloc(TopMemoryContext,
												sizeof(PkJsonNode) * FAST_NODES_KEPT);
			json->nodes = reuse ? fast_nodes : palloc(sizeof(PkJsonNode) * nodes);
			json->capacity = nodes;
			json->grow = no_grow;	/* nodes is enough: never moved or freed */
			if (pk_fast_emit(json) && !json->failed && json->count > 0)
				return true;
			if (!reuse)
				pfree(json->nodes);
		}
	}

	pk_json_init(json, grow_nodes);
	return pk_pg_parse(json_text, len, GetDatabaseEncoding(), json, err, what);
}

/* Parse one frame's JSON text, refusing frames over 1 MiB first. */
static bool
parse_text(char *json_text, int len, PkJson *json, PkError *err)
{
	return pk_check_frame_size(err, len) &&
		parse_json(json_text, len, json, err, "frame");
}

/* The JSON text of a text or jsonb datum. */
static char *
datum_json_text(Datum value, Oid type, int *len)
{
	char	   *json_text;

	if (type == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(value);

		json_text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}
	else
	{
		/* text, or bytea whose bytes raw_text_ok() checked */
		text	   *t = DatumGetTextPP(value);

		/* the lexer is bounded by the length: no copy, no terminator needed */
		*len = VARSIZE_ANY_EXHDR(t);
		return VARDATA_ANY(t);
	}
	*len = strlen(json_text);
	return json_text;
}

/* --------------------------------------------------------------------------
 * Catalog and partitions
 * --------------------------------------------------------------------------
 */

/*
 * Cache catalog rows from SPI_tuptable, shaped (agent_id, kind, id, slot,
 * type, max_temp, crit_temp): kind 'a' is a registered agent whose sensors
 * and fans are all in the same result, 's' and 'f' a sensor or fan.
 */
static void
cache_catalog_rows(void)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		char		kind = DatumGetChar(SPI_getbinval(tup, desc, 2, &isnull));
		CatalogKey	key;
		CatalogEntry *ce;
		Datum		d;

		memset(&key, 0, sizeof(key));
		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull)),
							   key.agent_id, sizeof(key.agent_id));
		if (kind == 'a')
		{
			bool		found;
			AgentEntry *entry = hash_search(agent_cache, key.agent_id, HASH_ENTER, &found);

			if (!found)
			{
				entry->nlast_sensors = entry->nlast_fans = 0;
				entry->last = NULL;
			}
			SPI_getbinval(tup, desc, 4, &isnull);
			entry->has_ahead = !isnull;
			continue;
		}
		key.kind = kind;
		text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull)),
							   key.id, sizeof(key.id));
		ce = hash_search(catalog_cache, &key, HASH_ENTER, NULL);
		ce->slot = DatumGetInt16(SPI_getbinval(tup, desc, 4, &isnull));
		ce->sensor_kind[0] = '\0';
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(d), ce->sensor_kind, sizeof(ce->sensor_kind));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		ce->has_max = !isnull;
		ce->max_temp = isnull ? 0 : DatumGetFloat4(d);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		ce->has_crit = !isnull;
		ce->crit_temp = isnull ? 0 : DatumGetFloat4(d);
	}
	cache_learnt();
}

/*
 * Load the catalog of the agents in agent_ids (a text Datum each) with one
 * query; the registered ones get an agent cache entry.
 */
static void
load_agents(Datum *agent_ids, int n)
{
	/* [1]: with the readings_ahead index, agents' rows stored ahead are noted */
	static SPIPlanPtr plans[2] = {NULL, NULL};
	SPIPlanPtr	plan = plans[have_ahead_index];
	Datum		args[1];
	int			ret;

	if (n == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[1] = {TEXTARRAYOID};
		char		sql[1024];

		snprintf(sql, sizeof(sql),
				 "SELECT a.agent_id, 'a'::\"char\", NULL::text, %s, NULL::text, "
				 "NULL::real, NULL::real FROM pankha.agents a WHERE a.agent_id = ANY ($1) "
				 "UNION ALL SELECT s.agent_id, 's', s.sensor_id, s.slot, s.kind, s.max_temp, s.crit_temp "
				 "FROM pankha.sensors s WHERE s.agent_id = ANY ($1) "
				 "UNION ALL SELECT f.agent_id, 'f', f.fan_id, f.slot, NULL, NULL, NULL "
				 "FROM pankha.fans f WHERE f.agent_id = ANY ($1)",
				 have_ahead_index ?
				 "CASE WHEN EXISTS (SELECT FROM pankha.readings r WHERE r.agent_id = a.agent_id "
				 "AND r.agent_ts IS NOT NULL) THEN 1::smallint END" : "NULL::smallint");
		plan = SPI_prepare(sql, 1, argtypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the pankha catalog query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		plans[have_ahead_index] = plan;
	}
	/*
	 * This query reads pankha.readings, and the lock it takes lasts the
	 * transaction: make today's partition first (see store_frames), or two
	 * ingest connections creating it at once each hold what the other waits
	 * for (test_deflate_load, on a cluster whose worker had not yet made it).
	 */
	if (have_ahead_index)
		ensure_partition(GetCurrentTimestamp());
	args[0] = PointerGetDatum(construct_array(agent_ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	ret = SPI_execute_plan(plan, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the pankha catalog: %s", SPI_result_code_string(ret));
	cache_catalog_rows();
}

/*
 * Load, with one query, the catalog of every agent of a batch that is not
 * cached yet (a cold cache would otherwise cost a query per agent).
 */
static void
prefetch_agents(Datum *ids, bool *nulls, int n)
{
	Datum	   *missing = palloc(sizeof(Datum) * Max(n, 1));
	int			nmissing = 0;

	for (int i = 0; i < n; i++)
	{
		char		id[PK_MAX_ID_BYTES + 1];
		text	   *t;

		if (nulls[i])
			continue;
		t = DatumGetTextPP(ids[i]);
		/* ids the cache cannot key are refused later, one by one */
		if (VARSIZE_ANY_EXHDR(t) > PK_MAX_ID_BYTES)
			continue;
		text_to_cstring_buffer(t, id, sizeof(id));
		if (!hash_search(agent_cache, id, HASH_FIND, NULL))
			missing[nmissing++] = ids[i];
	}
	load_agents(missing, nmissing);
	pfree(missing);
}

/* The cache entry of a registered agent, or NULL when it is not registered. */
static AgentEntry *
agent_registered(const char *agent_id)
{
	AgentEntry *entry;
	Datum		id;

	entry = hash_search(agent_cache, agent_id, HASH_FIND, NULL);
	if (entry)
		return entry;
	id = CStringGetTextDatum(agent_id);
	load_agents(&id, 1);
	/* not cached when unregistered: it may be registered any moment */
	return hash_search(agent_cache, agent_id, HASH_FIND, NULL);
}

/* Does the cached entry name this id? */
static inline bool
entry_is(const CatalogEntry *ce, char kind, const char *id, int len)
{
	return ce->key.kind == kind && memcmp(ce->key.id, id, len) == 0 && ce->key.id[len] == '\0';
}

/*
 * The fast path: when a frame carries the same sensors and fans in the same
 * order as the agent's previous one, with no new metadata, take their
 * slots from it without any hash lookup.
 */
static bool
same_as_last(AgentEntry *agent, PkFrame *frame)
{
	if (agent->last == NULL || agent->nlast_sensors != frame->nsensors ||
		agent->nlast_fans != frame->nfans)
		return false;
	for (int i = 0; i < frame->nsensors; i++)
	{
		CatalogEntry *ce = agent->last[i];
		PkSensor   *s = &frame->sensors[i];

		if (!entry_is(ce, 's', s->id, s->id_len) || sensor_changed(ce, s))
			return false;
	}
	for (int i = 0; i < frame->nfans; i++)
		if (!entry_is(agent->last[frame->nsensors + i], 'f', frame->fans[i].id,
					  frame->fans[i].id_len))
			return false;
	for (int i = 0; i < frame->nsensors; i++)
		frame->sensors[i].slot = agent->last[i]->slot;
	for (int i = 0; i < frame->nfans; i++)
		frame->fans[i].slot = agent->last[frame->nsensors + i]->slot;
	return true;
}

/* Copy the metadata a frame carries into a cache entry; absent fields stay. */
static void
remember_sensor(CatalogEntry *ce, const PkSensor *s)
{
	if (s->kind)
		snprintf(ce->sensor_kind, sizeof(ce->sensor_kind), "%.*s", s->kind_len, s->kind);
	if (s->has_max)
	{
		ce->has_max = true;
		ce->max_temp = (float4) s->max_temp;
	}
	if (s->has_crit)
	{
		ce->has_crit = true;
		ce->crit_temp = (float4) s->crit_temp;
	}
}

/*
 * Does the frame carry sensor metadata the catalog does not have?  A frame
 * that leaves out type or limits keeps what was recorded before.
 */
static bool
sensor_changed(const CatalogEntry *ce, const PkSensor *s)
{
	if (s->kind && ((int) strlen(ce->sensor_kind) != s->kind_len ||
					memcmp(ce->sensor_kind, s->kind, s->kind_len) != 0))
		return true;
	if (s->has_max && (!ce->has_max || ce->max_temp != (float4) s->max_temp))
		return true;
	if (s->has_crit && (!ce->has_crit || ce->crit_temp != (float4) s->crit_temp))
		return true;
	return false;
}

/* Look up the cache entry of the frame's i-th id (sensors first, then fans). */
static CatalogEntry *
find_entry(CatalogKey *key, const PkFrame *frame, int i)
{
	bool		is_sensor = i < frame->nsensors;
	const char *id = is_sensor ? frame->sensors[i].id : frame->fans[i - frame->nsensors].id;
	int			len = is_sensor ? frame->sensors[i].id_len : frame->fans[i - frame->nsensors].id_len;

	key->kind = is_sensor ? 's' : 'f';
	memset(key->id, 0, sizeof(key->id));
	memcpy(key->id, id, len);
	return hash_search(catalog_cache, key, HASH_FIND, NULL);
}

/* Start collecting catalog additions, in memory of cxt. */
static CatalogAdds *
catalog_adds_new(MemoryContext cxt)
{
	CatalogAdds *adds = MemoryContextAllocZero(cxt, sizeof(CatalogAdds));

	adds->cxt = cxt;
	return adds;
}

/* Make room for one more addition. */
static void
catalog_adds_grow(CatalogAdds *adds)
{
	int			cap = adds->cap ? adds->cap * 2 : 64;

#define PK_GROW(arr) \
	((arr) = adds->cap ? repalloc((arr), sizeof(*(arr)) * cap) : \
	 MemoryContextAlloc(adds->cxt, sizeof(*(arr)) * cap))
	PK_GROW(adds->agent_ids);
	PK_GROW(adds->kinds);
	PK_GROW(adds->ids);
	PK_GROW(adds->types);
	PK_GROW(adds->type_nulls);
	PK_GROW(adds->maxes);
	PK_GROW(adds->max_nulls);
	PK_GROW(adds->crits);
	PK_GROW(adds->crit_nulls);
#undef PK_GROW
	adds->cap = cap;
}

/* Add the frame's i-th id (sensors first, then fans) with its metadata. */
static void
catalog_adds_append(CatalogAdds *adds, const char *agent_id, const PkFrame *frame, int i)
{
	const PkSensor *s = i < frame->nsensors ? &frame->sensors[i] : NULL;
	const PkFan *f = s ? NULL : &frame->fans[i - frame->nsensors];
	MemoryContext oldcxt;
	int			k;

	if (adds->n == adds->cap)
		catalog_adds_grow(adds);
	oldcxt = MemoryContextSwitchTo(adds->cxt);
	k = adds->n++;
	adds->agent_ids[k] = CStringGetTextDatum(agent_id);
	adds->kinds[k] = CharGetDatum(s ? 's' : 'f');
	adds->ids[k] = PointerGetDatum(s ? cstring_to_text_with_len(s->id, s->id_len) :
								   cstring_to_text_with_len(f->id, f->id_len));
	adds->type_nulls[k] = !(s && s->kind);
	adds->types[k] = adds->type_nulls[k] ? (Datum) 0 :
		PointerGetDatum(cstring_to_text_with_len(s->kind, s->kind_len));
	adds->max_nulls[k] = !(s && s->has_max);
	adds->maxes[k] = Float4GetDatum(s && s->has_max ? (float4) s->max_temp : 0);
	adds->crit_nulls[k] = !(s && s->has_crit);
	adds->crits[k] = Float4GetDatum(s && s->has_crit ? (float4) s->crit_temp : 0);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Record the collected sensors and fans through pankha._catalog_add(), one
 * call for all agents, and cache the slots and metadata it returns.
 */
static void
catalog_adds_flush(CatalogAdds *adds)
{
	static SPIPlanPtr plan = NULL;
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[6];
	int			ret;

	if (adds->n == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[6] = {TEXTARRAYOID, CHARARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		FLOAT4ARRAYOID, FLOAT4ARRAYOID};

		plan = SPI_prepare("SELECT agent_id, kind, id, slot, type, max_temp, crit_temp "
						   "FROM pankha._catalog_add($1, $2, $3, $4, $5, $6)",
						   6, argtypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the pankha catalog insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	dims[0] = adds->n;
	args[0] = PointerGetDatum(construct_array(adds->agent_ids, adds->n, TEXTOID, -1, false,
											  TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(adds->kinds, adds->n, CHAROID, 1, true,
											  TYPALIGN_CHAR));
	args[2] = PointerGetDatum(construct_array(adds->ids, adds->n, TEXTOID, -1, false,
											  TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_md_array(adds->types, adds->type_nulls, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_md_array(adds->maxes, adds->max_nulls, 1, dims, lbs,
												 FLOAT4OID, 4, true, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_md_array(adds->crits, adds->crit_nulls, 1, dims, lbs,
												 FLOAT4OID, 4, true, TYPALIGN_INT));
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not record new sensors: %s", SPI_result_code_string(ret));
	cache_learnt();
	cache_catalog_rows();
	adds->n = 0;
}

/*
 * Give every sensor and fan of the frame its slot and remember the frame's
 * order for the fast path of the agent's next frame.  Ids the catalog does
 * not have (or sensors whose metadata changed) are recorded first, right
 * away; or, while an ingest_many call collects them (deferred_adds), they
 * are collected and the frame must be prepared again once the collection
 * was recorded.  An id that gets no slot (the agent used up its slots)
 * refuses the frame.
 */
static SlotResult
assign_slots(AgentEntry *agent, PkFrame *frame, PkError *err)
{
	int			total = frame->nsensors + frame->nfans;
	bool		any_missing = false;
	CatalogKey	key;
	CatalogAdds *adds = deferred_adds;

	if (same_as_last(agent, frame))
		return SLOTS_ASSIGNED;

	memset(&key, 0, sizeof(key));
	strlcpy(key.agent_id, agent->agent_id, sizeof(key.agent_id));
	for (int i = 0; i < total; i++)
	{
		CatalogEntry *ce = find_entry(&key, frame, i);

		if (ce == NULL || (i < frame->nsensors && sensor_changed(ce, &frame->sensors[i])))
		{
			if (adds == NULL)
				adds = catalog_adds_new(CurrentMemoryContext);
			catalog_adds_append(adds, agent->agent_id, frame, i);
			any_missing = true;
		}
	}
	if (any_missing && deferred_adds)
		return SLOTS_DEFERRED;
	if (any_missing)
		catalog_adds_flush(adds);

	for (int i = 0; i < total; i++)
		if (find_entry(&key, frame, i) == NULL)
		{
			bool		is_sensor = i < frame->nsensors;

			pk_fail(err, "54000",
					PK_PATH_AT(is_sensor ? "sensors" : "fans",
							   is_sensor ? i : i - frame->nsensors, "id"),
					is_sensor ? "too many sensors" : "too many fans",
					"Agent \"%s\" has used all its %s slots; an agent may report at most %d distinct %s ids over its lifetime.",
					agent->agent_id, is_sensor ? "sensor" : "fan",
					is_sensor ? 32767 : 255, is_sensor ? "sensor" : "fan");
			return SLOTS_REFUSED;
		}

	if (agent->last == NULL)
		agent->last = MemoryContextAlloc(cache_context,
										 sizeof(CatalogEntry *) * (PK_MAX_SENSORS + PK_MAX_FANS));
	for (int i = 0; i < total; i++)
	{
		CatalogEntry *ce = find_entry(&key, frame, i);

		if (i < frame->nsensors)
		{
			frame->sensors[i].slot = ce->slot;
			remember_sensor(ce, &frame->sensors[i]);
		}
		else
			frame->fans[i - frame->nsensors].slot = ce->slot;
		agent->last[i] = ce;
	}
	agent->nlast_sensors = frame->nsensors;
	agent->nlast_fans = frame->nfans;
	return SLOTS_ASSIGNED;
}

/* Load the fan status dictionary into status_cache, once per cache. */
static void
load_status_words(void)
{
	int			ret;

	ret = SPI_execute("SELECT status, code FROM pankha.fan_statuses", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pankha.fan_statuses: %s", SPI_result_code_string(ret));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		char		word[PK_MAX_STATUS_BYTES + 1];
		int			code = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[r],
													   SPI_tuptable->tupdesc, 2, &isnull));
		text	   *t = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));
		StatusEntry *entry;

		/* a code payloads can carry (254 and up mean something else there) */
		if (VARSIZE_ANY_EXHDR(t) > PK_MAX_STATUS_BYTES || code < 0 || code >= PK_STATUS_INLINE)
			continue;
		text_to_cstring_buffer(t, word, sizeof(word));
		entry = hash_search(status_cache, word, HASH_ENTER, NULL);
		entry->code = code;
	}
	status_loaded = true;
	cache_learnt();
}

/*
 * Give each fan status word its code in pankha.fan_statuses.  The
 * dictionary is not added to: a word it does not hold (-1) is carried in
 * the payload itself, so no agent can use it up for the others (M9).
 */
static void
assign_status_codes(PkFrame *frame)
{
	for (int i = 0; i < frame->nfans; i++)
	{
		PkFan	   *f = &frame->fans[i];
		char		word[PK_MAX_STATUS_BYTES + 1];
		StatusEntry *entry;

		f->status = -1;
		if (f->status_word == NULL)
			continue;
		if (!status_loaded)
			load_status_words();
		memcpy(word, f->status_word, f->status_len);
		word[f->status_len] = '\0';
		entry = hash_search(status_cache, word, HASH_FIND, NULL);
		if (entry)
			f->status = entry->code;
	}
}

/*
 * The word of a fan status code, for decoding; NULL for an unknown code.
 * The dictionary only grows, so names are cached once read.
 */
const char *
pankha_fan_status_name(int code)
{
	if (code < 0 || code > PK_MAX_STATUS_CODE)
		return NULL;
	ensure_caches();
	if (status_names[code] == NULL)
	{
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ret = SPI_execute("SELECT code, status FROM pankha.fan_statuses", true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read pankha.fan_statuses: %s", SPI_result_code_string(ret));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int			c = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1, &isnull));
			char	   *word = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);

			if (c >= 0 && c <= PK_MAX_STATUS_CODE && status_names[c] == NULL)
				status_names[c] = MemoryContextStrdup(cache_context, word);
		}
		SPI_finish();
		cache_learnt();
	}
	return status_names[code];
}

/* The UTC day number of a timestamp, the unit of partitioning. */
static int64
day_of(TimestampTz ts)
{
	int64		usecs = ts + UNIX_EPOCH_USECS;

	return usecs >= 0 ? usecs / USECS_PER_DAY : -((-usecs + USECS_PER_DAY - 1) / USECS_PER_DAY);
}

/* Create the day's partition of pankha.readings unless it is known to exist. */
static void
ensure_partition(TimestampTz ts)
{
	int64		day = day_of(ts);
	bool		found;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		args[1];
	int			ret;

	hash_search(partition_cache, &day, HASH_FIND, &found);
	if (found)
		return;
	args[0] = TimestampTzGetDatum(ts);
	ret = SPI_execute_with_args("SELECT pankha.ensure_partition($1)",
								1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not create a partition: %s", SPI_result_code_string(ret));
	hash_search(partition_cache, &day, HASH_ENTER, NULL);
	cache_learnt();
}

/* --------------------------------------------------------------------------
 * Storing
 * --------------------------------------------------------------------------
 */

/*
 * Validate the frame at node root of json and, when valid, encode it into
 * pf->payload, allocated in payload_cxt.
 */
static void
prepare_frame(PendingFrame *pf, const char *agent_id, const PkJson *json, int root,
			  TimestampTz now, MemoryContext payload_cxt)
{
	/*
	 * One frame at a time, in memory kept for the backend's life: at 25 KB
	 * a PkFrame is above the size palloc serves from its blocks, so each
	 * frame's own would be a malloc() and free() of its own.
	 */
	static PkFrame *frame = NULL;
	AgentEntry *agent;
	bool		in_future;
	int64		now_ms = (now + UNIX_EPOCH_USECS) / 1000;
	size_t		size;

	if (frame == NULL)
		frame = MemoryContextAlloc(TopMemoryContext, sizeof(PkFrame));
	pf->agent_id = agent_id;
	if (!pk_check_id(&pf->error, PK_PATH("agent_id"), agent_id, strlen(agent_id)) ||
		!pk_frame_from_json(json, root, agent_id, frame, &pf->error) ||
		!pk_check_time(&pf->error, frame, now_ms,
					   (int64) pankha_raw_retention * 60 * 1000, &in_future))
	{
		pf->rejected = true;
		return;
	}
	agent = agent_registered(agent_id);
	if (agent == NULL)
	{
		pk_fail(&pf->error, "42704", PK_PATH("agent_id"), "not registered",
				"Agent \"%s\" is not registered; register it with pankha.register_agent().",
				agent_id);
		pf->rejected = true;
		return;
	}

	assign_status_codes(frame);
	switch (assign_slots(agent, frame, &pf->error))
	{
		case SLOTS_ASSIGNED:
			break;
		case SLOTS_DEFERRED:
			pf->deferred = true;
				return;
		case SLOTS_REFUSED:
			pf->rejected = true;
				return;
	}

	pf->agent = agent;
	pf->claim = (TimestampTz) frame->timestamp_ms * 1000 - UNIX_EPOCH_USECS;
	pf->ts = pf->claim;
	if (in_future)
	{
		/* stored near the server's time; store_frames picks the exact ts */
		pf->ahead = true;
		pf->agent_ts = pf->claim;
	}

	size = pk_payload_size(frame);
	pf->payload = MemoryContextAlloc(payload_cxt, VARHDRSZ + size);
	SET_VARSIZE(pf->payload, VARHDRSZ + size);
	if (pk_encode_payload(frame, (unsigned char *) VARDATA(pf->payload), size) != size)
		elog(ERROR, "could not encode a frame of agent \"%s\"", agent_id);
}

/* Parse and prepare one frame given as JSON text, in a scratch context. */
static void
prepare_text_frame(PendingFrame *pf, const char *agent_id, char *json_text, int len,
				   TimestampTz now, MemoryContext scratch, MemoryContext payload_cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(scratch);
	PkJson		json;

	memset(pf, 0, sizeof(*pf));
	if (!parse_text(json_text, len, &json, &pf->error))
	{
		pf->agent_id = agent_id;
		pf->rejected = true;
	}
	else
		prepare_frame(pf, agent_id, &json, 0, now, payload_cxt);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(scratch);
}

/*
 * Order pending frames by agent and their own timestamp (their identity),
 * then by their place in the call, so the first of equal frames comes first.
 */
static int
claim_cmp(const void *a, const void *b)
{
	const PendingFrame *x = *(PendingFrame *const *) a;
	const PendingFrame *y = *(PendingFrame *const *) b;
	int			c = strcmp(x->agent_id, y->agent_id);

	if (c != 0)
		return c;
	if (x->claim != y->claim)
		return x->claim < y->claim ? -1 : 1;
	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Order rows by their key in pankha.readings, (agent, ts). */
static int
row_cmp(const void *a, const void *b)
{
	const PendingFrame *x = *(PendingFrame *const *) a;
	const PendingFrame *y = *(PendingFrame *const *) b;
	int			c = strcmp(x->agent_id, y->agent_id);

	if (c != 0)
		return c;
	return x->ts < y->ts ? -1 : (x->ts > y->ts ? 1 : 0);
}

/*
 * Prepare a statement once for the life of the backend, with a generic
 * plan.  These statements take whole batches as arrays, and a custom plan
 * (the default for a plan's first calls, and again whenever its estimate
 * beats the generic one's) was planned anew at every call, copying the
 * arrays into it as constants; their plans do not depend on the values
 * (partitions are pruned when the plan starts).
 */
static SPIPlanPtr
keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "could not prepare a pankha query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/*
 * Frames more than five minutes ahead of the server (pf->ahead) are stored
 * near the server's time, with their own timestamp in agent_ts, so their
 * key in pankha.readings is not their identity.  For them, and for every
 * frame of an agent that has such rows (its clock may have come back
 * within five minutes since: a re-send of an old frame is then not ahead),
 * look the frame up by agent_ts, and give each new frame ahead a ts of its
 * own.  Those agents are locked first (in a fixed order), so two calls
 * never store the same frame twice or pick the same ts.
 *
 * A ts picked here is never a whole millisecond, so it cannot collide with
 * a frame stored at its own timestamp (epoch milliseconds): it is the next
 * free microsecond after now, or after the agent's newest row from now on,
 * in the frames' own order.
 */
static void
place_frames_ahead(PendingFrame **valid, int nvalid, TimestampTz now)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr lookup_plan = NULL;
	static SPIPlanPtr newest_plan = NULL;
	Oid			argtypes[2] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum	   *agents = palloc(sizeof(Datum) * nvalid);
	Datum	   *claims = palloc(sizeof(Datum) * nvalid);
	PendingFrame **looked = palloc(sizeof(PendingFrame *) * nvalid);
	Datum		args[2];
	int			nlooked = 0;
	int			nagents = 0;
	TimestampTz next = 0;
	int			ret;

	/* every candidate, and each agent once (valid is sorted by agent) */
	for (int i = 0; i < nvalid; i++)
	{
		PendingFrame *pf = valid[i];

		if (pf->duplicate || !(pf->ahead || pf->agent->has_ahead))
			continue;
		if (nagents == 0 || strcmp(TextDatumGetCString(agents[nagents - 1]), pf->agent_id) != 0)
			agents[nagents++] = CStringGetTextDatum(pf->agent_id);
		claims[nlooked] = TimestampTzGetDatum(pf->claim);
		looked[nlooked++] = pf;
	}
	if (nlooked == 0)
		return;

	args[0] = PointerGetDatum(construct_array(agents, nagents, TEXTOID, -1, false, TYPALIGN_INT));
	ret = SPI_execute_plan(keep_plan(&lock_plan,
									 "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pankha ahead'), l.h) "
									 "FROM (SELECT DISTINCT pg_catalog.hashtext(a) AS h "
									 "FROM unnest($1::text[]) AS a ORDER BY 1) l",
									 1, argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not lock agents: %s", SPI_result_code_string(ret));

	if (have_ahead_index)
	{
		Datum	   *lookup_agents = palloc(sizeof(Datum) * nlooked);

		for (int i = 0; i < nlooked; i++)
			lookup_agents[i] = CStringGetTextDatum(looked[i]->agent_id);
		args[0] = PointerGetDatum(construct_array(lookup_agents, nlooked, TEXTOID, -1, false,
												  TYPALIGN_INT));
		args[1] = PointerGetDatum(construct_array(claims, nlooked, TIMESTAMPTZOID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		ret = SPI_execute_plan(keep_plan(&lookup_plan,
										 "SELECT u.i::integer FROM unnest($1::text[], $2::timestamptz[]) "
										 "WITH ORDINALITY AS u(a, c, i) WHERE EXISTS (SELECT FROM pankha.readings r "
										 "WHERE r.agent_id = u.a AND r.agent_ts = u.c AND r.agent_ts IS NOT NULL)",
										 2, argtypes),
							   args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not look up frames stored ahead: %s", SPI_result_code_string(ret));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int			i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1, &isnull));

			looked[i - 1]->duplicate = true;
		}
	}

	/* the newest row of each agent from this millisecond on */
	args[0] = PointerGetDatum(construct_array(agents, nagents, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = TimestampTzGetDatum(now - now % 1000);
	argtypes[1] = TIMESTAMPTZOID;
	ret = SPI_execute_plan(keep_plan(&newest_plan,
									 "SELECT a, (SELECT max(r.ts) FROM pankha.readings r "
									 "WHERE r.agent_id = a AND r.ts >= $2) "
									 "FROM unnest($1::text[]) WITH ORDINALITY AS u(a, i) ORDER BY u.i",
									 2, argtypes),
						   args, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != (uint64) nagents)
		elog(ERROR, "could not read the newest frames: %s", SPI_result_code_string(ret));

	for (int i = 0, a = -1; i < nlooked; i++)
	{
		PendingFrame *pf = looked[i];

		if (a < 0 || strcmp(TextDatumGetCString(agents[a]), pf->agent_id) != 0)
		{
			bool		isnull;
			Datum		newest;

			a++;
			newest = SPI_getbinval(SPI_tuptable->vals[a], SPI_tuptable->tupdesc, 2, &isnull);
			next = now - now % 1000;
			if (!isnull && DatumGetTimestampTz(newest) > next)
				next = DatumGetTimestampTz(newest);
		}
		if (!pf->ahead || pf->duplicate)
			continue;
		next++;
		if (next % 1000 == 0)
			next++;
		pf->ts = next;
	}
}

/*
 * Insert the rows with a plain INSERT in a subtransaction: when none was
 * stored before (nearly always) this spares ON CONFLICT's index probe and
 * its extra WAL record per row, and the RETURNING.  False, with nothing
 * stored, on a unique violation: a re-sent frame is among the rows.  Also
 * false, rolled back, when fewer than nrows rows went in: the trigger of a
 * partition with compressed hours skipped a re-sent frame packed already
 * (pankha._cold_dedup()), and the caller's RETURNING tells which.
 */
static bool
insert_all_new(Datum *args, int nrows)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID,
	TIMESTAMPTZARRAYOID, BYTEAARRAYOID};
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool inserted = false;

	keep_plan(&plan,
			  "INSERT INTO pankha.readings (agent_id, ts, received_at, agent_ts, payload) "
			  "SELECT u.agent_id, u.ts, $3, u.agent_ts, u.payload "
			  "FROM unnest($1, $2, $4, $5) AS u(agent_id, ts, agent_ts, payload)",
			  5, argtypes);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		int			ret = SPI_execute_plan(plan, args, NULL, false, 0);

		if (ret != SPI_OK_INSERT)
			elog(ERROR, "could not store frames: %s", SPI_result_code_string(ret));
		if (SPI_processed == (uint64) nrows)
		{
			ReleaseCurrentSubTransaction();
			inserted = true;
		}
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return inserted;
}

/* Insert several rows with one statement over unnest(); returns how many were new. */
static uint64
insert_many(PendingFrame **rows, Datum *agent_ids, Datum *tss,
			Datum *agent_tss, bool *agent_ts_nulls, Datum *payloads, int nrows,
			TimestampTz now)
{
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[5];
	int			ret;

	if (insert_plan == NULL)
	{
		Oid			argtypes[5] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID,
		TIMESTAMPTZARRAYOID, BYTEAARRAYOID};
		SPIPlanPtr	plan;

		/* generic, as those of keep_plan() */
		plan = SPI_prepare_cursor(
			"INSERT INTO pankha.readings AS r "
			"(agent_id, ts, received_at, agent_ts, payload) "
			"SELECT u.agent_id, u.ts, $3, u.agent_ts, u.payload "
			"FROM unnest($1, $2, $4, $5) AS u(agent_id, ts, agent_ts, payload) "
			"ON CONFLICT DO NOTHING RETURNING r.agent_id, r.ts",
			5, argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "could not prepare the pankha insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_plan = plan;
	}

	dims[0] = nrows;
	args[0] = PointerGetDatum(construct_array(agent_ids, nrows, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(tss, nrows, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = TimestampTzGetDatum(now);
	args[3] = PointerGetDatum(construct_md_array(agent_tss, agent_ts_nulls, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(payloads, nrows, BYTEAOID, -1, false, TYPALIGN_INT));

	if (insert_all_new(args, nrows))
	{
		for (int i = 0; i < nrows; i++)
			rows[i]->stored = true;
		return nrows;
	}

	ret = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store frames: %s", SPI_result_code_string(ret));

	/* Mark the rows that were new, by key (unique among rows). */
	qsort(rows, nrows, sizeof(PendingFrame *), row_cmp);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		PendingFrame probe;
		PendingFrame *probe_ptr = &probe;
		PendingFrame **hit;

		probe.agent_id = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		probe.ts = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		hit = bsearch(&probe_ptr, rows, nrows, sizeof(PendingFrame *), row_cmp);
		if (hit)
			(*hit)->stored = true;
	}

	return SPI_processed;
}

/* Insert one row (the single-frame path, with a simpler plan); true when new. */
static uint64
insert_one(PendingFrame *pf, TimestampTz now)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	if (insert_one_plan == NULL)
	{
		Oid			argtypes[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, BYTEAOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("INSERT INTO pankha.readings "
						   "(agent_id, ts, received_at, agent_ts, payload) "
						   "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
						   5, argtypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the pankha insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_one_plan = plan;
	}
	args[0] = CStringGetTextDatum(pf->agent_id);
	args[1] = TimestampTzGetDatum(pf->ts);
	args[2] = TimestampTzGetDatum(now);
	args[3] = TimestampTzGetDatum(pf->agent_ts);
	nulls[3] = pf->agent_ts == 0 ? 'n' : ' ';
	args[4] = PointerGetDatum(pf->payload);
	ret = SPI_execute_plan(insert_one_plan, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store a frame: %s", SPI_result_code_string(ret));
	pf->stored = SPI_processed == 1;
	return SPI_processed;
}

/*
 * Insert the valid frames of a batch with one statement; mark which were
 * new (stored) and which were already there.  Liveness is noted once.
 */
static void
store_frames(PendingFrame *frames, int n, TimestampTz now)
{
	PendingFrame **valid = palloc(sizeof(PendingFrame *) * n);
	PendingFrame **rows = palloc(sizeof(PendingFrame *) * n);
	Datum	   *agent_ids = palloc(sizeof(Datum) * n);
	Datum	   *tss = palloc(sizeof(Datum) * n);
	Datum	   *agent_tss = palloc(sizeof(Datum) * n);
	bool	   *agent_ts_nulls = palloc(sizeof(bool) * n);
	Datum	   *payloads = palloc(sizeof(Datum) * n);
	int			nvalid = 0;
	int			nrows = 0;
	uint64		stored;
	bool		fallback_needed = false;

	for (int i = 0; i < n; i++)
		if (!frames[i].rejected)
			valid[nvalid++] = &frames[i];
	if (nvalid == 0)
		return;

	/*
	 * A frame is its agent and its own timestamp: one repeated within the
	 * call is stored once, at its first place; those stored ahead before
	 * are found by place_frames_ahead().
	 */
	qsort(valid, nvalid, sizeof(PendingFrame *), claim_cmp);
	for (int i = 1; i < nvalid; i++)
		if (strcmp(valid[i - 1]->agent_id, valid[i]->agent_id) == 0 &&
			valid[i - 1]->claim == valid[i]->claim)
			valid[i]->duplicate = true;

	/*
	 * Every day's partition before place_frames_ahead() reads
	 * pankha.readings: once this transaction holds a lock on the parent,
	 * creating a partition (AccessExclusiveLock on it, under the partition
	 * advisory lock) can deadlock with another ingest connection making the
	 * same day's, each holding what the other waits for, and retried
	 * together they met again.  (load_agents() made today's before its own
	 * read of the table; a day other than today missing while two
	 * connections race for it can still deadlock once, and is retried.)
	 */
	for (int i = 0; i < nvalid; i++)
		ensure_partition(valid[i]->ts);
	place_frames_ahead(valid, nvalid, now);

	for (int i = 0; i < nvalid; i++)
	{
		PendingFrame *pf = valid[i];

		if (pf->duplicate)
			continue;
		ensure_partition(pf->ts);	/* moved ahead by place_frames_ahead() */
		rows[nrows] = pf;
		agent_ids[nrows] = CStringGetTextDatum(pf->agent_id);
		tss[nrows] = TimestampTzGetDatum(pf->ts);
		agent_tss[nrows] = TimestampTzGetDatum(pf->agent_ts);
		agent_ts_nulls[nrows] = pf->agent_ts == 0;
		payloads[nrows] = PointerGetDatum(pf->payload);
		nrows++;
	}

	if (nrows == 0)
		stored = 0;
	else if (nrows == 1)
		stored = insert_one(rows[0], now);
	else
		stored = insert_many(rows, agent_ids, tss, agent_tss, agent_ts_nulls,
							 payloads, nrows, now);

	/* An agent's first rows ahead: every backend must look its frames up. */
	for (int i = 0; i < nrows; i++)
		if (rows[i]->ahead && rows[i]->stored && !rows[i]->agent->has_ahead)
		{
			rows[i]->agent->has_ahead = true;
			cache_learnt();
			bump_on_commit = true;
		}
	pg_atomic_fetch_add_u64(&pankha_shared->frames_stored, stored);

	/* Liveness: every valid frame, new or re-sent, shows the agent is alive. */
	LWLockAcquire(pankha_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nvalid; i++)
		if (!pankha_note_frame(valid[i]->agent_id, valid[i]->ts, now))
			fallback_needed = true;
	LWLockRelease(pankha_shared->lock);

	if (fallback_needed)
	{
		Oid			argtypes[2] = {TEXTARRAYOID, TIMESTAMPTZOID};
		Datum		fargs[2];

		ereport(DEBUG1,
				(errmsg("pankha liveness table is full; writing last_seen directly"),
				 errhint("Raise pankha.max_agents.")));
		fargs[0] = PointerGetDatum(construct_array(agent_ids, nrows, TEXTOID, -1, false,
												   TYPALIGN_INT));
		fargs[1] = TimestampTzGetDatum(now);
		SPI_execute_with_args("UPDATE pankha.agents SET last_seen = $2 "
							  "WHERE agent_id = ANY ($1)",
							  2, argtypes, fargs, NULL, false, 0);
	}
}

/* ereport a PkError, optionally prefixing its field path. */
static void
raise_error(const PkError *err, const char *prefix)
{
	pg_atomic_fetch_add_u64(&pankha_shared->frames_rejected, 1);
	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(err->sqlstate[0], err->sqlstate[1], err->sqlstate[2],
								   err->sqlstate[3], err->sqlstate[4])),
			 errmsg("%s%s", prefix ? prefix : "", err->message),
			 err->detail[0] ? errdetail("%s", err->detail) : 0));
}

/*
 * A batch call allocates several buffers of its whole size (the Bind
 * message, the array argument as received, its copy), each over glibc's
 * mmap and trim thresholds, so every call mapped fresh memory and returned
 * it, and the page faults of touching it again cost more than parsing and
 * storing the frames (batches were slower than single calls).  A backend
 * that ingests keeps up to 64 MB of freed memory for its next call instead.
 */
static void
keep_freed_memory(void)
{
#ifdef __GLIBC__
	static bool done = false;

	if (!done)
	{
		mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
		mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
		done = true;
	}
#endif
}

/* Common entry: checks, caches and SPI. */
static void
ingest_begin(void)
{
	pankha_require_preload();
	keep_freed_memory();
	ensure_caches();
	deferred_adds = NULL;		/* whatever an interrupted call left */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* --------------------------------------------------------------------------
 * SQL-callable functions
 * --------------------------------------------------------------------------
 */

/* A scratch context for one frame's parse tree, reset after each frame. */
static MemoryContext
frame_scratch(void)
{
	return AllocSetContextCreate(CurrentMemoryContext, "pankha frame",
								 ALLOCSET_DEFAULT_SIZES);
}

/*
 * pankha.ingest(agent_id text, frame jsonb|text) RETURNS boolean
 *
 * Stores one frame; true when it was new, false when it was already stored.
 * Bad input raises an error naming the field.
 */
Datum
pankha_ingest(PG_FUNCTION_ARGS)
{
	char	   *agent_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;
	PendingFrame pf;
	char	   *json_text;
	int			len;

	json_text = datum_json_text(PG_GETARG_DATUM(1), type, &len);
	ingest_begin();
	prepare_text_frame(&pf, agent_id, json_text, len, now, frame_scratch(), cxt);
	if (pf.rejected)
		raise_error(&pf.error, NULL);
	store_frames(&pf, 1, now);
	SPI_finish();
	PG_RETURN_BOOL(pf.stored);
}

/*
 * pankha.ingest_batch(agent_id text, frames jsonb|text) RETURNS integer
 *
 * Stores a JSON array of frames of one agent, all or nothing; returns how
 * many were new.  An error names the frame: frames[2].sensors[0].id.
 */
Datum
pankha_ingest_batch(PG_FUNCTION_ARGS)
{
	char	   *agent_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;
	PendingFrame *pending;
	PkJson		json;
	PkError		err;
	char	   *json_text;
	int			len;
	int			n;
	int			i;
	int			stored = 0;

	json_text = datum_json_text(PG_GETARG_DATUM(1), type, &len);
	if (!parse_json(json_text, len, &json, &err, "frames"))
		raise_error(&err, NULL);
	if (json.nodes[0].type != PK_JSON_ARRAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames: not an array"),
				 errdetail("pankha.ingest_batch() takes a JSON array of frames.")));

	n = json.nodes[0].count;
	ingest_begin();
	pending = MemoryContextAllocZero(cxt, sizeof(PendingFrame) * Max(n, 1));
	i = 0;
	for (int node = json.nodes[0].first; node >= 0; node = json.nodes[node].next, i++)
	{
		char		prefix[32];

		if (json.nodes[node].type != PK_JSON_OBJECT)
		{
			snprintf(prefix, sizeof(prefix), "frames[%d]", i);
			pk_fail(&err, "22023", PK_PATH(prefix), "not a JSON object",
					"Each element of frames must be a frame object.");
			raise_error(&err, NULL);
		}
		snprintf(prefix, sizeof(prefix), "frames[%d].", i);
		prepare_frame(&pending[i], agent_id, &json, node, now, cxt);
		if (pending[i].rejected)
			raise_error(&pending[i].error, prefix);
	}
	store_frames(pending, n, now);
	for (i = 0; i < n; i++)
		stored += pending[i].stored;
	SPI_finish();
	PG_RETURN_INT32(stored);
}

/*
 * A frame given as bytea must be text in the database encoding, without
 * NUL bytes: what a text argument is checked for on input, where a bad one
 * fails the whole call instead of its own frame.
 */
static bool
raw_text_ok(bytea *raw, PkError *err)
{
	const char *bytes = VARDATA_ANY(raw);
	int			len = VARSIZE_ANY_EXHDR(raw);
	const char *nul = memchr(bytes, '\0', len);

	if (nul)
		return pk_fail(err, "22021", PK_PATH("frame"), "contains a NUL byte",
					   "A frame is JSON text, which has no NUL bytes (byte %d is 0x00).",
					   (int) (nul - bytes));
	if (!pg_verify_mbstr(GetDatabaseEncoding(), bytes, len, true))
		return pk_fail(err, "22021", PK_PATH("frame"), "not valid text",
					   "A frame is JSON text in the database encoding (%s).",
					   GetDatabaseEncodingName());
	return true;
}

/* Prepare the frame of one element of ingest_many's arrays. */
static void
prepare_many_frame(PendingFrame *pf, Datum id, bool id_null, Datum frame, bool frame_null,
				   Oid elemtype, TimestampTz now, MemoryContext scratch, MemoryContext cxt)
{
	MemoryContext oldcxt;
	char	   *agent_id;
	char	   *json_text;
	int			len;

	if (id_null || frame_null)
	{
		memset(pf, 0, sizeof(*pf));
		pf->rejected = true;
		pk_fail(&pf->error, "22004", PK_PATH(id_null ? "agent_id" : "frame"),
				"null", "Neither an agent id nor a frame may be null.");
		return;
	}
	agent_id = MemoryContextStrdup(cxt, TextDatumGetCString(id));
	if (elemtype == BYTEAOID)
	{
		PkError		err;

		if (!raw_text_ok(DatumGetByteaPP(frame), &err))
		{
			memset(pf, 0, sizeof(*pf));
			pf->agent_id = agent_id;
			pf->rejected = true;
			pf->error = err;
			return;
		}
	}
	oldcxt = MemoryContextSwitchTo(scratch);
	json_text = datum_json_text(frame, elemtype, &len);
	MemoryContextSwitchTo(oldcxt);
	prepare_text_frame(pf, agent_id, json_text, len, now, scratch, cxt);
}

/*
 * pankha.ingest_many(agent_ids text[], frames text[]|jsonb[])
 *		RETURNS TABLE(ord integer, stored boolean, sqlstate text, message text,
 *					  detail text)
 *
 * The bridge's form: frames of many agents in one call.  Invalid frames are
 * reported in their row instead of raising, so one bad frame does not take
 * the batch with it.  stored is false with no sqlstate for a frame that
 * was already stored.
 */
Datum
pankha_ingest_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *ids_array = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *frames_array = PG_GETARG_ARRAYTYPE_P(1);
	Oid			elemtype = ARR_ELEMTYPE(frames_array);
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext scratch;
	Datum	   *ids;
	bool	   *id_nulls;
	Datum	   *frames;
	bool	   *frame_nulls;
	int			nids;
	int			n;
	PendingFrame *pending;
	CatalogAdds *adds;
	MemoryContext oldcxt;

	deconstruct_array(ids_array, TEXTOID, -1, false, TYPALIGN_INT, &ids, &id_nulls, &nids);
	deconstruct_array(frames_array, elemtype, -1, false, TYPALIGN_INT,
					  &frames, &frame_nulls, &n);
	if (nids != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("agent_ids and frames must have the same length"),
				 errdetail("agent_ids has %d elements and frames has %d.", nids, n)));

	InitMaterializedSRF(fcinfo, 0);
	/* outside SPI's memory context: the results are read after SPI_finish */
	pending = palloc0(sizeof(PendingFrame) * Max(n, 1));
	scratch = frame_scratch();
	ingest_begin();
	prefetch_agents(ids, id_nulls, n);

	/*
	 * Frames whose agent has sensors or fans the catalog lacks wait while
	 * the others are prepared; their additions are then recorded with one
	 * call and they are prepared again.
	 */
	adds = catalog_adds_new(cxt);
	deferred_adds = adds;
	for (int i = 0; i < n; i++)
		prepare_many_frame(&pending[i], ids[i], id_nulls[i], frames[i], frame_nulls[i],
						   elemtype, now, scratch, cxt);
	deferred_adds = NULL;
	if (adds->n > 0)
	{
		catalog_adds_flush(adds);
		for (int i = 0; i < n; i++)
			if (pending[i].deferred)
				prepare_many_frame(&pending[i], ids[i], id_nulls[i], frames[i], frame_nulls[i],
								   elemtype, now, scratch, cxt);
	}
	store_frames(pending, n, now);
	pankha_live_load();
	SPI_finish();

	/* frames of agents another bridge's dashboards watch (live.c) */
	for (int i = 0; i < n; i++)
		if (pending[i].stored && pending[i].agent_id &&
			pankha_live_wants(pending[i].agent_id))
		{
			int			len;
			const char *json_text = datum_json_text(frames[i], elemtype, &len);

			pankha_live_announce(pending[i].agent_id, json_text, len);
		}

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = BoolGetDatum(pending[i].stored);
		if (pending[i].rejected)
		{
			pg_atomic_fetch_add_u64(&pankha_shared->frames_rejected, 1);
			values[2] = CStringGetTextDatum(pending[i].error.sqlstate);
			values[3] = CStringGetTextDatum(pending[i].error.message);
			values[4] = CStringGetTextDatum(pending[i].error.detail);
		}
		else
			nulls[2] = nulls[3] = nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextSwitchTo(oldcxt);

	return (Datum) 0;
}
