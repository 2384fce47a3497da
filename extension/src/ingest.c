/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  pankha.ingest() and its batch forms: jsonb frames in, compact rows out.
 *
 * A frame is walked once: each field is read from the jsonb container and
 * handed to the plain-C rules in validate.c, which fill a PkError on the
 * first problem.  Valid frames get their sensors and fans mapped to
 * catalog slots (cached per backend), are encoded into one bytea payload,
 * and are inserted together with one saved plan over unnest() with
 * ON CONFLICT DO NOTHING, so a re-sent frame is stored once.
 *
 * The per-backend caches (catalog slots, partitions known to exist) only
 * ever hold committed facts or facts of the current transaction; when a
 * transaction or subtransaction that added to them aborts, they are
 * dropped, and when another backend deletes catalog rows the shared
 * catalog_generation counter tells us to drop them too.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "validate.h"

PG_FUNCTION_INFO_V1(pankha_ingest);
PG_FUNCTION_INFO_V1(pankha_ingest_batch);
PG_FUNCTION_INFO_V1(pankha_ingest_many);

#define MS_PER_DAY	(86400 * INT64CONST(1000))
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
	bool		registered;
} AgentEntry;

/* One frame of a batch on its way to the table. */
typedef struct PendingFrame
{
	const char *agent_id;
	TimestampTz ts;
	TimestampTz agent_ts;		/* 0 unless the clock was in the future */
	bool		has_seq;
	int64		seq;
	bytea	   *payload;
	bool		stored;
	bool		rejected;
	PkError		error;
} PendingFrame;

static MemoryContext cache_context = NULL;
static HTAB *catalog_cache = NULL;
static HTAB *agent_cache = NULL;
static HTAB *partition_cache = NULL;	/* days (int64) known to have a partition */
static uint64 cache_generation = 0;
static bool cache_touched_in_xact = false;
static bool callbacks_registered = false;
static SPIPlanPtr insert_plan = NULL;

static void reset_caches(void);
static void ensure_caches(void);
static void ingest_xact_callback(XactEvent event, void *arg);
static void ingest_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static bool parse_frame(Jsonb *jb, const char *agent_id, PkFrame *frame, PkError *err);
static bool agent_registered(const char *agent_id);
static void assign_slots(const char *agent_id, PkFrame *frame);
static void ensure_partition(TimestampTz ts);
static void prepare_frame(PendingFrame *pf, const char *agent_id, Jsonb *jb,
						  TimestampTz now);
static void store_frames(PendingFrame *frames, int n, TimestampTz now);
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
		cache_context = AllocSetContextCreate(TopMemoryContext,
											  "pankha ingest cache",
											  ALLOCSET_DEFAULT_SIZES);
		callbacks_registered = true;
	}

	generation = pg_atomic_read_u64(&pankha_shared->catalog_generation);
	if (generation != cache_generation)
	{
		reset_caches();
		cache_generation = generation;
	}
	if (catalog_cache)
		return;

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
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	partition_cache = hash_create("pankha partition cache", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Facts learnt in an aborted transaction may be false: forget them. */
static void
ingest_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (cache_touched_in_xact)
			reset_caches();
		cache_touched_in_xact = false;
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
		cache_touched_in_xact = false;
}

/* The same for an aborted savepoint (a bridge retrying one frame). */
static void
ingest_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && cache_touched_in_xact)
		reset_caches();
}

/* --------------------------------------------------------------------------
 * Reading a frame out of jsonb
 * --------------------------------------------------------------------------
 */

/* Name of a jsonb value's type, for error details. */
static const char *
json_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "an array";
	}
}

/* Look up key in an object container; JSON null counts as absent. */
static bool
get_key(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	if (getKeyJsonValueFromContainer(obj, key, strlen(key), out) == NULL)
		return false;
	return out->type != jbvNull;
}

/* Read a number field; missing is an error only when required. */
static bool
read_number(PkError *err, JsonbContainer *obj, const char *key,
			const char *path, bool required, bool *present, double *out)
{
	JsonbValue	v;

	*present = false;
	if (!get_key(obj, key, &v))
	{
		if (required)
			return pk_fail(err, "22023", path, "missing",
						   "This field is required and must be a number.");
		return true;
	}
	if (v.type != jbvNumeric)
		return pk_fail(err, "22023", path, "not a number",
					   "Expected a JSON number, got %s.", json_type_name(&v));
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v.val.numeric)));
	*present = true;
	return true;
}

/* Read a string field; the returned pointer points into the jsonb. */
static bool
read_string(PkError *err, JsonbContainer *obj, const char *key,
			const char *path, bool required, const char **str, int *len)
{
	JsonbValue	v;

	*str = NULL;
	*len = 0;
	if (!get_key(obj, key, &v))
	{
		if (required)
			return pk_fail(err, "22023", path, "missing",
						   "This field is required and must be a string.");
		return true;
	}
	if (v.type != jbvString)
		return pk_fail(err, "22023", path, "not a string",
					   "Expected a JSON string, got %s.", json_type_name(&v));
	*str = v.val.string.val;
	*len = v.val.string.len;
	return true;
}

/* Read an optional array field into its container. */
static bool
read_array(PkError *err, JsonbContainer *obj, const char *key,
		   JsonbContainer **array)
{
	JsonbValue	v;

	*array = NULL;
	if (!get_key(obj, key, &v))
		return true;
	if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
		return pk_fail(err, "22023", key, "not an array",
					   "Expected a JSON array, got %s.", json_type_name(&v));
	*array = v.val.binary.data;
	return true;
}

/* Element i of an array, which must be an object. */
static bool
array_object(PkError *err, JsonbContainer *array, int i, const char *path,
			 JsonbContainer **obj)
{
	JsonbValue *v = getIthJsonbValueFromContainer(array, i);

	if (v == NULL || v->type != jbvBinary || JsonContainerIsArray(v->val.binary.data))
		return pk_fail(err, "22023", path, "not an object",
					   "Each entry must be a JSON object, got %s.",
					   v ? json_type_name(v) : "nothing");
	*obj = v->val.binary.data;
	return true;
}

/* Walk one sensor object into frame->sensors[i]. */
static bool
parse_sensor(PkError *err, JsonbContainer *obj, int i, PkSensor *s)
{
	char		path[64];
	bool		present;

	snprintf(path, sizeof(path), "sensors[%d].id", i);
	if (!read_string(err, obj, "id", path, true, &s->id, &s->id_len) ||
		!pk_check_id(err, path, s->id, s->id_len))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].temperature", i);
	if (!read_number(err, obj, "temperature", path, true, &present, &s->temperature))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].max_temp", i);
	if (!read_number(err, obj, "max_temp", path, false, &s->has_max, &s->max_temp))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].crit_temp", i);
	if (!read_number(err, obj, "crit_temp", path, false, &s->has_crit, &s->crit_temp))
		return false;
	snprintf(path, sizeof(path), "sensors[%d].type", i);
	if (!read_string(err, obj, "type", path, false, &s->kind, &s->kind_len))
		return false;
	if (s->kind && s->kind_len > PK_MAX_KIND_BYTES)
		return pk_fail(err, "22001", path, "longer than 32 bytes",
					   "A sensor type must be at most %d bytes; this one has %d.",
					   PK_MAX_KIND_BYTES, s->kind_len);
	if (s->kind && !pk_check_id(err, path, s->kind, s->kind_len))
		return false;
	s->slot = -1;
	return pk_check_sensor(err, s, i);
}

/* Walk one fan object into frame->fans[i]. */
static bool
parse_fan(PkError *err, JsonbContainer *obj, int i, PkFan *f)
{
	char		path[64];
	bool		present;
	const char *status;
	int			status_len;

	snprintf(path, sizeof(path), "fans[%d].id", i);
	if (!read_string(err, obj, "id", path, true, &f->id, &f->id_len) ||
		!pk_check_id(err, path, f->id, f->id_len))
		return false;
	snprintf(path, sizeof(path), "fans[%d].rpm", i);
	if (!read_number(err, obj, "rpm", path, true, &present, &f->rpm))
		return false;
	snprintf(path, sizeof(path), "fans[%d].speed", i);
	if (!read_number(err, obj, "speed", path, false, &f->has_speed, &f->speed))
		return false;
	snprintf(path, sizeof(path), "fans[%d].targetSpeed", i);
	if (!read_number(err, obj, "targetSpeed", path, false, &f->has_target, &f->target))
		return false;
	snprintf(path, sizeof(path), "fans[%d].status", i);
	if (!read_string(err, obj, "status", path, false, &status, &status_len))
		return false;
	f->status = -1;
	if (status && !pk_set_fan_status(err, f, path, status, status_len))
		return false;
	f->slot = -1;
	return pk_check_fan(err, f, i);
}

/*
 * Turn a jsonb frame (the data object, or the whole {"type":"data"}
 * message) into a validated PkFrame.
 */
static bool
parse_frame(Jsonb *jb, const char *agent_id, PkFrame *frame, PkError *err)
{
	JsonbContainer *data = &jb->root;
	JsonbContainer *array;
	JsonbValue	v;
	double		number;
	bool		present;
	const char *str;
	int			len;

	pk_frame_init(frame);
	if (!pk_check_frame_size(err, VARSIZE(jb)))
		return false;
	if (JB_ROOT_IS_SCALAR(jb) || JB_ROOT_IS_ARRAY(jb))
		return pk_fail(err, "22023", "frame", "not a JSON object",
					   "A frame is the data object of a data message, or the whole message.");

	/* The whole message: {"type":"data","data":{...}} */
	if (get_key(data, "type", &v))
	{
		if (v.type != jbvString || v.val.string.len != 4 ||
			memcmp(v.val.string.val, "data", 4) != 0)
			return pk_fail(err, "22023", "type", "not \"data\"",
						   "Only messages of type \"data\" carry readings.");
		if (!get_key(data, "data", &v))
			return pk_fail(err, "22023", "data", "missing",
						   "A data message carries its readings in a \"data\" object.");
		if (v.type != jbvBinary || JsonContainerIsArray(v.val.binary.data))
			return pk_fail(err, "22023", "data", "not an object",
						   "Expected a JSON object, got %s.", json_type_name(&v));
		data = v.val.binary.data;
	}

	if (!read_string(err, data, "agentId", "agentId", false, &str, &len))
		return false;
	if (str && ((int) strlen(agent_id) != len || memcmp(str, agent_id, len) != 0))
		return pk_fail(err, "22023", "agentId", "does not match the agent",
					   "The frame names agent \"%.*s\" but was sent for agent \"%s\".",
					   Min(len, PK_MAX_ID_BYTES), str, agent_id);

	if (!read_number(err, data, "timestamp", "timestamp", true, &present, &number) ||
		!pk_set_timestamp(err, frame, number))
		return false;
	if (!read_number(err, data, "seq", "seq", false, &present, &number))
		return false;
	if (present && !pk_set_seq(err, frame, number))
		return false;

	if (!read_array(err, data, "sensors", &array))
		return false;
	if (array)
	{
		int			n = JsonContainerSize(array);

		if (!pk_check_count(err, "sensors", n, PK_MAX_SENSORS))
			return false;
		for (int i = 0; i < n; i++)
		{
			JsonbContainer *obj;
			char		path[32];

			snprintf(path, sizeof(path), "sensors[%d]", i);
			if (!array_object(err, array, i, path, &obj) ||
				!parse_sensor(err, obj, i, &frame->sensors[i]))
				return false;
			frame->nsensors++;
		}
	}

	if (!read_array(err, data, "fans", &array))
		return false;
	if (array)
	{
		int			n = JsonContainerSize(array);

		if (!pk_check_count(err, "fans", n, PK_MAX_FANS))
			return false;
		for (int i = 0; i < n; i++)
		{
			JsonbContainer *obj;
			char		path[32];

			snprintf(path, sizeof(path), "fans[%d]", i);
			if (!array_object(err, array, i, path, &obj) ||
				!parse_fan(err, obj, i, &frame->fans[i]))
				return false;
			frame->nfans++;
		}
	}

	if (get_key(data, "systemHealth", &v))
	{
		JsonbContainer *health;

		if (v.type != jbvBinary || JsonContainerIsArray(v.val.binary.data))
			return pk_fail(err, "22023", "systemHealth", "not an object",
						   "Expected a JSON object, got %s.", json_type_name(&v));
		health = v.val.binary.data;
		for (int f = 0; f < PK_H_NFIELDS; f++)
		{
			char		path[64];

			snprintf(path, sizeof(path), "systemHealth.%s", pk_health_names[f]);
			if (!read_number(err, health, pk_health_names[f], path, false,
							 &present, &number))
				return false;
			if (present && !pk_set_health(err, frame, (PkHealthField) f, number))
				return false;
		}
	}

	return pk_check_duplicates(err, frame);
}

/* --------------------------------------------------------------------------
 * Catalog and partitions
 * --------------------------------------------------------------------------
 */

/* Is agent_id registered?  Cached once known. */
static bool
agent_registered(const char *agent_id)
{
	AgentEntry *entry;
	bool		found;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;

	entry = hash_search(agent_cache, agent_id, HASH_FIND, NULL);
	if (entry)
		return entry->registered;

	args[0] = CStringGetTextDatum(agent_id);
	ret = SPI_execute_with_args(
		"SELECT 's'::\"char\", sensor_id, slot, kind, max_temp, crit_temp "
		"FROM pankha.sensors WHERE agent_id = $1 "
		"UNION ALL SELECT 'f', fan_id, slot, NULL, NULL, NULL "
		"FROM pankha.fans WHERE agent_id = $1 "
		"UNION ALL SELECT 'a', agent_id, 0, NULL, NULL, NULL "
		"FROM pankha.agents WHERE agent_id = $1",
		1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the pankha catalog: %s", SPI_result_code_string(ret));

	if (SPI_processed == 0)
		return false;			/* not cached: it may be registered any moment */

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char		kind = DatumGetChar(SPI_getbinval(tup, desc, 1, &isnull));
		CatalogKey	key;
		CatalogEntry *ce;
		char	   *id;

		if (kind == 'a')
			continue;
		memset(&key, 0, sizeof(key));
		strlcpy(key.agent_id, agent_id, sizeof(key.agent_id));
		key.kind = kind;
		id = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		strlcpy(key.id, id, sizeof(key.id));
		ce = hash_search(catalog_cache, &key, HASH_ENTER, NULL);
		ce->slot = DatumGetInt16(SPI_getbinval(tup, desc, 3, &isnull));
		ce->sensor_kind[0] = '\0';
		if (kind == 's')
		{
			Datum		d = SPI_getbinval(tup, desc, 4, &isnull);

			if (!isnull)
				text_to_cstring_buffer(DatumGetTextPP(d), ce->sensor_kind,
									   sizeof(ce->sensor_kind));
			d = SPI_getbinval(tup, desc, 5, &ce->has_max);
			ce->has_max = !ce->has_max;
			ce->max_temp = ce->has_max ? DatumGetFloat4(d) : 0;
			d = SPI_getbinval(tup, desc, 6, &ce->has_crit);
			ce->has_crit = !ce->has_crit;
			ce->crit_temp = ce->has_crit ? DatumGetFloat4(d) : 0;
		}
	}

	entry = hash_search(agent_cache, agent_id, HASH_ENTER, &found);
	entry->registered = true;
	cache_touched_in_xact = true;
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

/*
 * Give every sensor and fan of the frame its slot, recording new ones (and
 * changed sensor limits) in the catalog through pankha._catalog_add().
 */
static void
assign_slots(const char *agent_id, PkFrame *frame)
{
	Datum	   *kinds = NULL;
	Datum	   *ids = NULL;
	Datum	   *types = NULL;
	Datum	   *maxes = NULL;
	Datum	   *crits = NULL;
	bool	   *type_nulls = NULL;
	bool	   *max_nulls = NULL;
	bool	   *crit_nulls = NULL;
	int			nmissing = 0;
	int			total = frame->nsensors + frame->nfans;
	CatalogKey	key;

	memset(&key, 0, sizeof(key));
	strlcpy(key.agent_id, agent_id, sizeof(key.agent_id));

	for (int i = 0; i < total; i++)
	{
		bool		is_sensor = i < frame->nsensors;
		PkSensor   *s = is_sensor ? &frame->sensors[i] : NULL;
		PkFan	   *f = is_sensor ? NULL : &frame->fans[i - frame->nsensors];
		CatalogEntry *ce;

		key.kind = is_sensor ? 's' : 'f';
		memset(key.id, 0, sizeof(key.id));
		memcpy(key.id, is_sensor ? s->id : f->id, is_sensor ? s->id_len : f->id_len);
		ce = hash_search(catalog_cache, &key, HASH_FIND, NULL);
		if (ce && !(is_sensor && sensor_changed(ce, s)))
		{
			if (is_sensor)
				s->slot = ce->slot;
			else
				f->slot = ce->slot;
			continue;
		}

		if (kinds == NULL)
		{
			kinds = palloc(sizeof(Datum) * total);
			ids = palloc(sizeof(Datum) * total);
			types = palloc(sizeof(Datum) * total);
			maxes = palloc(sizeof(Datum) * total);
			crits = palloc(sizeof(Datum) * total);
			type_nulls = palloc(sizeof(bool) * total);
			max_nulls = palloc(sizeof(bool) * total);
			crit_nulls = palloc(sizeof(bool) * total);
		}
		kinds[nmissing] = CharGetDatum(key.kind);
		ids[nmissing] = PointerGetDatum(cstring_to_text(key.id));
		type_nulls[nmissing] = !(s && s->kind);
		types[nmissing] = type_nulls[nmissing] ? (Datum) 0 :
			PointerGetDatum(cstring_to_text_with_len(s->kind, s->kind_len));
		max_nulls[nmissing] = !(s && s->has_max);
		maxes[nmissing] = Float4GetDatum(s && s->has_max ? (float4) s->max_temp : 0);
		crit_nulls[nmissing] = !(s && s->has_crit);
		crits[nmissing] = Float4GetDatum(s && s->has_crit ? (float4) s->crit_temp : 0);
		nmissing++;
	}

	if (nmissing > 0)
	{
		Oid			argtypes[6] = {TEXTOID, CHARARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		FLOAT4ARRAYOID, FLOAT4ARRAYOID};
		Datum		args[6];
		int			dims[1] = {nmissing};
		int			lbs[1] = {1};
		int			ret;

		args[0] = CStringGetTextDatum(agent_id);
		args[1] = PointerGetDatum(construct_array(kinds, nmissing, CHAROID, 1, true, TYPALIGN_CHAR));
		args[2] = PointerGetDatum(construct_array(ids, nmissing, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_md_array(types, type_nulls, 1, dims, lbs,
													 TEXTOID, -1, false, TYPALIGN_INT));
		args[4] = PointerGetDatum(construct_md_array(maxes, max_nulls, 1, dims, lbs,
													 FLOAT4OID, 4, true, TYPALIGN_INT));
		args[5] = PointerGetDatum(construct_md_array(crits, crit_nulls, 1, dims, lbs,
													 FLOAT4OID, 4, true, TYPALIGN_INT));
		ret = SPI_execute_with_args(
			"SELECT kind, id, slot FROM pankha._catalog_add($1, $2, $3, $4, $5, $6)",
			6, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not record new sensors: %s", SPI_result_code_string(ret));
		cache_touched_in_xact = true;

		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			bool		found;
			CatalogEntry *ce;

			key.kind = DatumGetChar(SPI_getbinval(tup, desc, 1, &isnull));
			memset(key.id, 0, sizeof(key.id));
			text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull)),
								   key.id, sizeof(key.id));
			ce = hash_search(catalog_cache, &key, HASH_ENTER, &found);
			if (!found)
			{
				ce->sensor_kind[0] = '\0';
				ce->has_max = ce->has_crit = false;
			}
			ce->slot = DatumGetInt16(SPI_getbinval(tup, desc, 3, &isnull));
		}

		/* second pass: every id is now cached */
		for (int i = 0; i < total; i++)
		{
			bool		is_sensor = i < frame->nsensors;
			PkSensor   *s = is_sensor ? &frame->sensors[i] : NULL;
			PkFan	   *f = is_sensor ? NULL : &frame->fans[i - frame->nsensors];
			CatalogEntry *ce;

			key.kind = is_sensor ? 's' : 'f';
			memset(key.id, 0, sizeof(key.id));
			memcpy(key.id, is_sensor ? s->id : f->id, is_sensor ? s->id_len : f->id_len);
			ce = hash_search(catalog_cache, &key, HASH_FIND, NULL);
			if (ce == NULL)
				elog(ERROR, "pankha._catalog_add() did not return a slot for \"%s\"", key.id);
			if (is_sensor)
			{
				s->slot = ce->slot;
				remember_sensor(ce, s);
			}
			else
				f->slot = ce->slot;
		}
	}
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
	cache_touched_in_xact = true;
}

/* --------------------------------------------------------------------------
 * Storing
 * --------------------------------------------------------------------------
 */

/* Validate one frame and, when valid, encode it into pf->payload. */
static void
prepare_frame(PendingFrame *pf, const char *agent_id, Jsonb *jb, TimestampTz now)
{
	PkFrame    *frame = palloc(sizeof(PkFrame));
	bool		in_future;
	int64		now_ms = (now + UNIX_EPOCH_USECS) / 1000;
	size_t		size;

	memset(pf, 0, sizeof(*pf));
	pf->agent_id = agent_id;

	if (!pk_check_id(&pf->error, "agent_id", agent_id, strlen(agent_id)) ||
		!parse_frame(jb, agent_id, frame, &pf->error) ||
		!pk_check_time(&pf->error, frame, now_ms,
					   (int64) pankha_raw_retention * 60 * 1000, &in_future))
	{
		pf->rejected = true;
		pfree(frame);
		return;
	}
	if (!agent_registered(agent_id))
	{
		pk_fail(&pf->error, "42704", "agent_id", "not registered",
				"Agent \"%s\" is not registered; register it with pankha.register_agent().",
				agent_id);
		pf->rejected = true;
		pfree(frame);
		return;
	}

	assign_slots(agent_id, frame);

	pf->ts = (TimestampTz) frame->timestamp_ms * 1000 - UNIX_EPOCH_USECS;
	if (in_future)
	{
		pf->agent_ts = pf->ts;
		pf->ts = now;
	}
	pf->has_seq = frame->has_seq;
	pf->seq = frame->seq;

	size = pk_payload_size(frame);
	pf->payload = palloc(VARHDRSZ + size);
	SET_VARSIZE(pf->payload, VARHDRSZ + size);
	if (pk_encode_payload(frame, (unsigned char *) VARDATA(pf->payload), size) != size)
		elog(ERROR, "could not encode a frame of agent \"%s\"", agent_id);
	pfree(frame);
}

/* Compare two pending frames by (agent, ts), for duplicate detection. */
static int
pending_cmp(const void *a, const void *b)
{
	const PendingFrame *x = *(PendingFrame *const *) a;
	const PendingFrame *y = *(PendingFrame *const *) b;
	int			c = strcmp(x->agent_id, y->agent_id);

	if (c != 0)
		return c;
	return x->ts < y->ts ? -1 : (x->ts > y->ts ? 1 : 0);
}

/*
 * Insert the valid frames of a batch with one statement; mark which were
 * new (stored) and which were already there.  Liveness is noted once.
 */
static void
store_frames(PendingFrame *frames, int n, TimestampTz now)
{
	PendingFrame **valid = palloc(sizeof(PendingFrame *) * n);
	Datum	   *agent_ids = palloc(sizeof(Datum) * n);
	Datum	   *tss = palloc(sizeof(Datum) * n);
	Datum	   *seqs = palloc(sizeof(Datum) * n);
	bool	   *seq_nulls = palloc(sizeof(bool) * n);
	Datum	   *agent_tss = palloc(sizeof(Datum) * n);
	bool	   *agent_ts_nulls = palloc(sizeof(bool) * n);
	Datum	   *payloads = palloc(sizeof(Datum) * n);
	int			nvalid = 0;
	int			nrows = 0;
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[6];
	int			ret;
	bool		fallback_needed = false;

	for (int i = 0; i < n; i++)
		if (!frames[i].rejected)
			valid[nvalid++] = &frames[i];
	if (nvalid == 0)
		return;

	/* A key repeated within the batch is stored once, at its first place. */
	qsort(valid, nvalid, sizeof(PendingFrame *), pending_cmp);
	for (int i = 0; i < nvalid; i++)
	{
		PendingFrame *pf = valid[i];

		if (i > 0 && pending_cmp(&valid[i - 1], &valid[i]) == 0)
			continue;
		ensure_partition(pf->ts);
		agent_ids[nrows] = CStringGetTextDatum(pf->agent_id);
		tss[nrows] = TimestampTzGetDatum(pf->ts);
		seqs[nrows] = Int64GetDatum(pf->seq);
		seq_nulls[nrows] = !pf->has_seq;
		agent_tss[nrows] = TimestampTzGetDatum(pf->agent_ts);
		agent_ts_nulls[nrows] = pf->agent_ts == 0;
		payloads[nrows] = PointerGetDatum(pf->payload);
		nrows++;
	}

	if (insert_plan == NULL)
	{
		Oid			argtypes[6] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID,
		INT8ARRAYOID, TIMESTAMPTZARRAYOID, BYTEAARRAYOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare(
			"INSERT INTO pankha.readings AS r "
			"(agent_id, ts, received_at, seq, agent_ts, payload) "
			"SELECT u.agent_id, u.ts, $3, u.seq, u.agent_ts, u.payload "
			"FROM unnest($1, $2, $4, $5, $6) AS u(agent_id, ts, seq, agent_ts, payload) "
			"ON CONFLICT DO NOTHING RETURNING r.agent_id, r.ts",
			6, argtypes);
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
	args[3] = PointerGetDatum(construct_md_array(seqs, seq_nulls, 1, dims, lbs, INT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_md_array(agent_tss, agent_ts_nulls, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_array(payloads, nrows, BYTEAOID, -1, false, TYPALIGN_INT));

	ret = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store frames: %s", SPI_result_code_string(ret));

	/* Mark the rows that were new, by key. */
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		PendingFrame probe;
		PendingFrame *probe_ptr = &probe;
		PendingFrame **hit;

		probe.agent_id = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		probe.ts = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		hit = bsearch(&probe_ptr, valid, nvalid, sizeof(PendingFrame *), pending_cmp);
		/* step back to the first of equal keys: that one was inserted */
		while (hit && hit > valid && pending_cmp(hit - 1, hit) == 0)
			hit--;
		if (hit)
			(*hit)->stored = true;
	}

	pg_atomic_fetch_add_u64(&pankha_shared->frames_stored, SPI_processed);

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
		fargs[0] = args[0];
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

/* Common entry: checks, caches and SPI. */
static void
ingest_begin(void)
{
	pankha_require_preload();
	ensure_caches();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* --------------------------------------------------------------------------
 * SQL-callable functions
 * --------------------------------------------------------------------------
 */

/*
 * pankha.ingest(agent_id text, frame jsonb) RETURNS boolean
 *
 * Stores one frame; true when it was new, false when it was already stored.
 * Bad input raises an error naming the field.
 */
Datum
pankha_ingest(PG_FUNCTION_ARGS)
{
	char	   *agent_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *jb = PG_GETARG_JSONB_P(1);
	TimestampTz now = GetCurrentTimestamp();
	PendingFrame pf;

	ingest_begin();
	prepare_frame(&pf, agent_id, jb, now);
	if (pf.rejected)
		raise_error(&pf.error, NULL);
	store_frames(&pf, 1, now);
	SPI_finish();
	PG_RETURN_BOOL(pf.stored);
}

/*
 * pankha.ingest_batch(agent_id text, frames jsonb) RETURNS integer
 *
 * Stores a JSON array of frames of one agent, all or nothing; returns how
 * many were new.  An error names the frame: frames[2].sensors[0].id.
 */
Datum
pankha_ingest_batch(PG_FUNCTION_ARGS)
{
	char	   *agent_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *frames = PG_GETARG_JSONB_P(1);
	TimestampTz now = GetCurrentTimestamp();
	PendingFrame *pending;
	int			n;
	int			stored = 0;

	if (!JB_ROOT_IS_ARRAY(frames) || JB_ROOT_IS_SCALAR(frames))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("frames: not an array"),
				 errdetail("pankha.ingest_batch() takes a JSON array of frames.")));
	n = JB_ROOT_COUNT(frames);
	ingest_begin();
	pending = palloc(sizeof(PendingFrame) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&frames->root, i);
		char		prefix[32];
		Jsonb	   *jb;

		snprintf(prefix, sizeof(prefix), "frames[%d].", i);
		if (v->type != jbvBinary || JsonContainerIsArray(v->val.binary.data))
		{
			PkError		err;

			prefix[strlen(prefix) - 1] = '\0';	/* the element itself */
			pk_fail(&err, "22023", prefix, "not a JSON object",
					"Each element of frames must be a frame object.");
			raise_error(&err, NULL);
		}
		jb = JsonbValueToJsonb(v);
		prepare_frame(&pending[i], agent_id, jb, now);
		if (pending[i].rejected)
			raise_error(&pending[i].error, prefix);
	}
	store_frames(pending, n, now);
	for (int i = 0; i < n; i++)
		stored += pending[i].stored;
	SPI_finish();
	PG_RETURN_INT32(stored);
}

/*
 * pankha.ingest_many(agent_ids text[], frames jsonb[])
 *		RETURNS TABLE(ord integer, stored boolean, sqlstate text, message text,
 *					  detail text)
 *
 * The bridge's form: frames of many agents in one call.  Invalid frames are
 * reported in their row (sqlstate, message) instead of raising, so one bad
 * frame does not take the batch with it.  stored is false with no sqlstate
 * for a frame that was already stored.
 */
Datum
pankha_ingest_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *ids_array = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *frames_array = PG_GETARG_ARRAYTYPE_P(1);
	TimestampTz now = GetCurrentTimestamp();
	Datum	   *ids;
	bool	   *id_nulls;
	Datum	   *frames;
	bool	   *frame_nulls;
	int			nids;
	int			n;
	PendingFrame *pending;
	MemoryContext oldcxt;

	deconstruct_array(ids_array, TEXTOID, -1, false, TYPALIGN_INT, &ids, &id_nulls, &nids);
	deconstruct_array(frames_array, JSONBOID, -1, false, TYPALIGN_INT,
					  &frames, &frame_nulls, &n);
	if (nids != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("agent_ids and frames must have the same length"),
				 errdetail("agent_ids has %d elements and frames has %d.", nids, n)));

	InitMaterializedSRF(fcinfo, 0);
	ingest_begin();

	pending = palloc(sizeof(PendingFrame) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (id_nulls[i] || frame_nulls[i])
		{
			memset(&pending[i], 0, sizeof(PendingFrame));
			pending[i].rejected = true;
			pk_fail(&pending[i].error, "22004", id_nulls[i] ? "agent_id" : "frame",
					"null", "Neither an agent id nor a frame may be null.");
			continue;
		}
		prepare_frame(&pending[i], TextDatumGetCString(ids[i]),
					  DatumGetJsonbP(frames[i]), now);
	}
	store_frames(pending, n, now);
	SPI_finish();

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
