/*-------------------------------------------------------------------------
 *
 * pankha.c
 *	  Module load: GUCs, shared memory and the background worker.
 *
 * The extension is meant to be loaded with shared_preload_libraries: the
 * liveness table lives in shared memory and the worker is registered at
 * postmaster start.  SQL functions that need either call
 * pankha_require_preload() and say so clearly when it was not.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *pankha_database = NULL;
int			pankha_raw_retention = 7 * 24 * 60;
int			pankha_max_agents = 65536;
int			pankha_naptime = 10;
int			pankha_liveness_flush = 10;
bool		pankha_worker_enabled = true;
int			pankha_rollup_1m_retention = 90 * 24 * 60;
int			pankha_rollup_1h_retention = 730 * 24 * 60;
int			pankha_rollup_hour_delay = 60;
int			pankha_offline_after = 0;
char	   *pankha_archive_directory = NULL;
char	   *pankha_bridge_id = NULL;

PankhaShared *pankha_shared = NULL;
HTAB	   *pankha_liveness = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void pankha_shmem_request(void);
static void pankha_shmem_startup(void);
static void pankha_define_gucs(void);

/* Module load callback. */
void
_PG_init(void)
{
	pankha_define_gucs();
	pankha_cold_planner_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pankha_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pankha_shmem_startup;

	pankha_register_worker();
}

/* Define the pankha.* settings. */
static void
pankha_define_gucs(void)
{
	/*
	 * Settings fixed at server start can only be defined while the library
	 * is preloaded; loaded later (CREATE EXTENSION without preloading) they
	 * keep their defaults, and the functions that need the preloaded
	 * library say so.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("pankha.database",
								   "Database in which the pankha background worker runs.",
								   "The worker idles until CREATE EXTENSION pankha has been run there.",
								   &pankha_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

		DefineCustomIntVariable("pankha.max_agents",
								"Agents whose liveness is tracked in shared memory.",
								"Beyond this many agents, last_seen is written to pankha.agents "
								"directly. Range: 16 to 1000000.",
								&pankha_max_agents,
								65536,
								16, 1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	DefineCustomIntVariable("pankha.raw_retention",
							"How long raw frames are kept.",
							"Frames older than this are refused by pankha.ingest() and their "
							"partitions dropped by the worker. Range: 1 hour to 10 years.",
							&pankha_raw_retention,
							7 * 24 * 60,
							60, 10 * 366 * 24 * 60,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.naptime",
							"Time the background worker sleeps between passes.",
							"Range: 1 second to 1 hour.",
							&pankha_naptime,
							10,
							1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.liveness_flush",
							"How often liveness is persisted from shared memory to pankha.agents.",
							"Range: 1 second to 1 hour.",
							&pankha_liveness_flush,
							10,
							1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pankha.worker_enabled",
							 "Whether the background worker does its work.",
							 "When off the worker stays up but idles.",
							 &pankha_worker_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.rollup_1m_retention",
							"How long 1-minute rollups are kept.",
							"Day partitions of pankha.rollup_1m older than this (and than "
							"pankha.raw_retention) are dropped by the worker. Range: 1 day to 10 years.",
							&pankha_rollup_1m_retention,
							90 * 24 * 60,
							24 * 60, 10 * 366 * 24 * 60,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.rollup_1h_retention",
							"How long 1-hour rollups are kept.",
							"Month partitions of pankha.rollup_1h older than this are dropped "
							"by the worker. Range: 1 day to 20 years.",
							&pankha_rollup_1h_retention,
							730 * 24 * 60,
							24 * 60, 20 * 366 * 24 * 60,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.rollup_hour_delay",
							"How long changed hours wait before their 1-hour rollup is recomputed.",
							"Hours touched by new frames are recomputed from the 1-minute rollups "
							"at most this often, so a busy hour is not re-aggregated on every pass. "
							"Range: 0 (every pass) to 1 hour.",
							&pankha_rollup_hour_delay,
							60,
							0, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pankha.offline_after",
							"How long an agent may stay silent before it is marked offline.",
							"0 means three of the agent's update intervals, at least 15 seconds. "
							"Range: 0 to 1 day.",
							&pankha_offline_after,
							0,
							0, 24 * 60 * 60,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pankha.archive_directory",
							   "Directory partitions are archived to before they are dropped.",
							   "Empty (the default) drops without archiving. Otherwise each partition "
							   "is first written there as gzip-compressed CSV by the server, and "
							   "is dropped only when that succeeded.",
							   &pankha_archive_directory,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pankha.bridge_id",
							   "The bridge this session ingests for.",
							   "Set by the bridge on its connections: ingest_many announces a frame "
							   "on pankha_live only to the bridges other than this one that watch "
							   "its agent (pankha.live_watch).",
							   &pankha_bridge_id,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	pankha_define_retention_gucs();

	MarkGUCPrefixReserved("pankha");
}

/* Ask the postmaster for our shared memory and lock. */
static void
pankha_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(PankhaShared)) +
						   pankha_liveness_shmem_size());
	RequestNamedLWLockTranche("pankha", 1);
}

/* Create or attach to the shared state. */
static void
pankha_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	pankha_shared = ShmemInitStruct("pankha", sizeof(PankhaShared), &found);
	if (!found)
	{
		pankha_shared->lock = &(GetNamedLWLockTranche("pankha"))->lock;
		pg_atomic_init_u64(&pankha_shared->catalog_generation, 0);
		pg_atomic_init_u64(&pankha_shared->frames_stored, 0);
		pg_atomic_init_u64(&pankha_shared->frames_rejected, 0);
		pankha_shared->worker_pid = 0;
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(((PankhaLiveness *) NULL)->agent_id);
	info.entrysize = sizeof(PankhaLiveness);
	pankha_liveness = ShmemInitHash("pankha liveness",
									Min(pankha_max_agents, 1024),
									pankha_max_agents,
									&info,
									HASH_ELEM | HASH_STRINGS);

	LWLockRelease(AddinShmemInitLock);
}

/* Raise a clear error when the library was not preloaded. */
void
pankha_require_preload(void)
{
	if (pankha_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pankha must be loaded via shared_preload_libraries"),
				 errdetail("Ingest keeps agent liveness in shared memory, which only a preloaded library can allocate."),
				 errhint("Add 'pankha' to shared_preload_libraries in postgresql.conf and restart the server.")));
}
