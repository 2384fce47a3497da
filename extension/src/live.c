/*-------------------------------------------------------------------------
 *
 * live.c
 *	  Live data across bridges: ingest announces the frames of watched
 *	  agents on NOTIFY pankha_live.
 *
 * Each bridge records in pankha.live_watches the topics its dashboards
 * subscribe to (pankha.live_watch, refreshed before they expire).  The
 * ingest backend keeps the set of agents those topics name, as
 * pankha.live_watched() resolves it for every bridge but its own
 * (pankha.bridge_id), reloaded at most every LIVE_RELOAD_MS; a frame of
 * an agent in it is announced with its agent, group and text, and is
 * delivered by PostgreSQL on commit.  A frame of an agent nobody else
 * watches costs one hash lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "validate.h"

/* How long a loaded watch set is used before it is read again. */
#define LIVE_RELOAD_MS 200

/* NOTIFY's payload limit, as commands/async.c defines it */
#ifndef NOTIFY_PAYLOAD_MAX_LENGTH
#define NOTIFY_PAYLOAD_MAX_LENGTH (BLCKSZ - NAMEDATALEN - 128)
#endif

typedef struct LiveEntry
{
	char		agent_id[PK_MAX_ID_BYTES + 1];	/* hash key */
	char	   *group_name;		/* NULL when not known or in none */
} LiveEntry;

static MemoryContext live_cxt = NULL;
static HTAB *watched = NULL;	/* NULL: no agent is watched by name or group */
static bool watch_all = false;	/* some other bridge subscribes to "global" */
static bool loaded = false;
static TimestampTz loaded_at = 0;
static char loaded_for[129];

/*
 * Make sure the watch set is recent (called by ingest_many with SPI
 * connected).  A database still at 0.1.0 has no pankha.live_watches:
 * nothing is watched there.
 */
void
pankha_live_load(void)
{
	static SPIPlanPtr plan = NULL;
	const char *me = pankha_bridge_id ? pankha_bridge_id : "";
	TimestampTz now = GetCurrentTimestamp();
	Oid			nsp;
	Datum		args[1];
	int			ret;

	if (loaded && strcmp(loaded_for, me) == 0 &&
		!TimestampDifferenceExceeds(loaded_at, now, LIVE_RELOAD_MS))
		return;
	loaded = false;
	if (live_cxt == NULL)
		live_cxt = AllocSetContextCreate(TopMemoryContext, "pankha live watches",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(live_cxt);
	watched = NULL;
	watch_all = false;

	nsp = get_namespace_oid("pankha", true);
	if (OidIsValid(nsp) && OidIsValid(get_relname_relid("live_watches", nsp)))
	{
		if (plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};

			plan = SPI_prepare("SELECT agent_id, group_name FROM pankha.live_watched($1)",
							   1, argtypes);
			if (plan == NULL)
				elog(ERROR, "could not prepare the live watch query: %s",
					 SPI_result_code_string(SPI_result));
			SPI_keepplan(plan);
		}
		args[0] = CStringGetTextDatum(me);
		ret = SPI_execute_plan(plan, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the live watches: %s", SPI_result_code_string(ret));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *id = SPI_getvalue(tup, desc, 1);
			char	   *group = SPI_getvalue(tup, desc, 2);
			LiveEntry  *e;
			bool		found;

			if (id == NULL || strlen(id) > PK_MAX_ID_BYTES)
				continue;
			if (strcmp(id, "*") == 0)
			{
				watch_all = true;
				continue;
			}
			if (watched == NULL)
			{
				HASHCTL		ctl;

				ctl.keysize = PK_MAX_ID_BYTES + 1;
				ctl.entrysize = sizeof(LiveEntry);
				ctl.hcxt = live_cxt;
				watched = hash_create("pankha live watches", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			}
			e = hash_search(watched, id, HASH_ENTER, &found);
			if (!found)
				e->group_name = NULL;
			if (group && !e->group_name)
				e->group_name = MemoryContextStrdup(live_cxt, group);
		}
	}
	strlcpy(loaded_for, me, sizeof(loaded_for));
	loaded_at = now;
	loaded = true;
}

/* Does another bridge watch this agent? */
bool
pankha_live_wants(const char *agent_id)
{
	if (!loaded || (watched == NULL && !watch_all))
		return false;
	if (watch_all)
		return true;
	return strlen(agent_id) <= PK_MAX_ID_BYTES &&
		hash_search(watched, agent_id, HASH_FIND, NULL) != NULL;
}

/*
 * Announce a newly stored frame (JSON text of len bytes) when another
 * bridge watches its agent: {"from","agent_id","group","frame"}, from the
 * ingesting bridge (every listener hears every notification: that one
 * ignores it).  A payload over
 * NOTIFY's limit goes without the frame ("frame": null, "oversize": true).
 */
void
pankha_live_announce(const char *agent_id, const char *frame, int len)
{
	LiveEntry  *e = NULL;
	StringInfoData buf;
	size_t		head;

	if (!loaded || (watched == NULL && !watch_all))
		return;
	if (watched && strlen(agent_id) <= PK_MAX_ID_BYTES)
		e = hash_search(watched, agent_id, HASH_FIND, NULL);
	if (e == NULL && !watch_all)
		return;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"from\":");
	escape_json(&buf, pankha_bridge_id ? pankha_bridge_id : "");
	appendStringInfoString(&buf, ",\"agent_id\":");
	escape_json(&buf, agent_id);
	appendStringInfoString(&buf, ",\"group\":");
	if (e && e->group_name)
		escape_json(&buf, e->group_name);
	else
		appendStringInfoString(&buf, "null");
	head = buf.len;
	appendStringInfoString(&buf, ",\"frame\":");
	if (head + 10 + (size_t) len + 1 < NOTIFY_PAYLOAD_MAX_LENGTH)
	{
		appendBinaryStringInfo(&buf, frame, len);
		appendStringInfoChar(&buf, '}');
	}
	else
		appendStringInfoString(&buf, "null,\"oversize\":true}");
	Async_Notify("pankha_live", buf.data);
	pfree(buf.data);
}
