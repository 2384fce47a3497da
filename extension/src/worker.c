/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pankha background worker.
 *
 * One worker per server, connected to the database named by
 * pankha.database.  Each pass runs in its own transaction: it skips the
 * work while the server is in recovery or the extension is not installed,
 * and otherwise calls pankha.maintain(), which persists liveness and marks
 * agents online or offline, keeps partitions ahead, rolls up new frames,
 * drops (and archives) partitions past retention, expires and redelivers
 * commands and judges alert rules (see extension/sql/50_rollups.sql and
 * after).  An error in a pass is logged and the worker carries on with the
 * next one; it never takes the server down.  SIGHUP reloads the settings,
 * SIGTERM ends the worker at once.
 *
 * The retention settings of what the worker prunes row by row are defined
 * here (pankha_define_retention_gucs); the SQL reads them with
 * pankha.setting_interval(), see extension/sql/55_retention.sql.  Their
 * defaults keep a month of operational history (commands, connections,
 * status reports), half a year of alerts like the audit log, and two years
 * of the record of dropped partitions, like the 1-hour rollups.
 *
 *-------------------------------------------------------------------------
 */
#include "pankha.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void PankhaWorkerMain(Datum main_arg);

typedef enum WorkerState
{
	WORKER_STARTING,			/* no pass yet */
	WORKER_WORKING,				/* the extension is installed */
	WORKER_IDLE_NO_EXTENSION,	/* waiting for CREATE EXTENSION pankha */
	WORKER_IDLE_RECOVERY,		/* the server is a standby */
	WORKER_IDLE_DISABLED		/* pankha.worker_enabled is off */
} WorkerState;

static WorkerState worker_state = WORKER_STARTING;

/* Retention settings, in minutes; read by the SQL, not by this file. */
static int	pankha_command_retention = 30 * 24 * 60;
static int	pankha_connection_retention = 30 * 24 * 60;
static int	pankha_alert_retention = 180 * 24 * 60;
static int	pankha_report_retention = 30 * 24 * 60;
static int	pankha_archive_log_retention = 730 * 24 * 60;

/* Cold storage: how old frames are when compressed (minutes; 0 = before today, UTC). */
static int	pankha_compress_after = 0;

static bool worker_pass(void);
static void worker_compress(void);
static void define_retention(const char *name, const char *short_desc, const char *long_desc,
							 int *variable, int days);
static void worker_enter_state(WorkerState state);

/* Register the worker at postmaster start. */
void
pankha_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pankha");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "PankhaWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pankha worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pankha worker");
	RegisterBackgroundWorker(&worker);
}

/* Define one retention setting: minutes, 1 hour to 20 years, reloadable. */
static void
define_retention(const char *name, const char *short_desc, const char *long_desc,
				 int *variable, int days)
{
	DefineCustomIntVariable(name, short_desc, long_desc, variable,
							days * 24 * 60, 60, 20 * 366 * 24 * 60,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
}

/* The retention settings of the tables the worker prunes row by row. */
void
pankha_define_retention_gucs(void)
{
	define_retention("pankha.command_retention",
					 "How long finished commands are kept.",
					 "Acked, failed, expired and dead commands created longer ago are deleted "
					 "by the worker; unfinished ones never are. Range: 1 hour to 20 years.",
					 &pankha_command_retention, 30);
	define_retention("pankha.connection_retention",
					 "How long closed agent connections are kept in pankha.connections.",
					 "Connections closed longer ago are deleted by the worker; open ones never "
					 "are. Range: 1 hour to 20 years.",
					 &pankha_connection_retention, 30);
	define_retention("pankha.alert_retention",
					 "How long resolved alerts are kept.",
					 "Alerts resolved longer ago are deleted by the worker, with the alert state "
					 "no rule needs any more; firing alerts never are. Range: 1 hour to 20 years.",
					 &pankha_alert_retention, 180);
	define_retention("pankha.report_retention",
					 "How long an agent's latest status report is kept.",
					 "Reports older than this (agents that stopped reporting) are deleted by "
					 "the worker. Range: 1 hour to 20 years.",
					 &pankha_report_retention, 30);
	define_retention("pankha.archive_log_retention",
					 "How long the record of dropped partitions is kept.",
					 "Rows of pankha.archived_partitions older than this are deleted by the "
					 "worker; the archive files are left alone. Range: 1 hour to 20 years.",
					 &pankha_archive_log_retention, 730);
	DefineCustomIntVariable("pankha.compress_after",
							"How old frames are when the worker compresses them.",
							"0 (the default) compresses the frames of every UTC day before the "
							"current one; a positive age compresses whole hours older than it; "
							"-1 turns compression off. Read by pankha.compress_cutoff().",
							&pankha_compress_after, 0, -1, 20 * 366 * 24 * 60,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
}

/* Entry point of the background worker. */
void
PankhaWorkerMain(Datum main_arg)
{
	MemoryContext pass_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(pankha_database, NULL, 0);
	pankha_shared->worker_pid = MyProcPid;
	elog(LOG, "pankha worker started in database \"%s\"", pankha_database);

	pass_context = AllocSetContextCreate(TopMemoryContext, "pankha worker pass",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			elog(LOG, "pankha worker reloaded its configuration (naptime %d s, worker_enabled %s)",
				 pankha_naptime, pankha_worker_enabled ? "on" : "off");
		}

		oldcxt = MemoryContextSwitchTo(pass_context);
		if (!pankha_worker_enabled)
			worker_enter_state(WORKER_IDLE_DISABLED);
		else if (RecoveryInProgress())
			worker_enter_state(WORKER_IDLE_RECOVERY);
		else if (worker_pass() && worker_state == WORKER_WORKING)
			worker_compress();
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(pass_context);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(pankha_naptime, pankha_liveness_flush) * 1000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Run body(arg) with SPI in a transaction of its own, reporting activity.
 * Returns false when it failed; the error has been logged and the
 * transaction rolled back.
 */
static bool
worker_transaction(const char *activity, void (*body) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		SPI_connect();
		body(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* One maintenance pass: pankha.maintain(), when the extension is there. */
static void
maintain_body(void *arg)
{
	int			ret;

	ret = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pankha'",
					  true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		worker_enter_state(WORKER_WORKING);
		ret = SPI_execute("SELECT pankha.maintain()", false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "pankha.maintain() failed: %s", SPI_result_code_string(ret));
	}
	else
		worker_enter_state(WORKER_IDLE_NO_EXTENSION);
}

static bool
worker_pass(void)
{
	return worker_transaction("pankha maintenance", maintain_body, NULL);
}

/* One compression step; *(int64 *) arg gets the frames it moved. */
static void
compress_body(void *arg)
{
	int64	   *moved = (int64 *) arg;
	int			ret;

	ret = SPI_execute("SELECT CASE WHEN pg_catalog.to_regprocedure('pankha.compress_step()') "
					  "IS NOT NULL THEN pankha.compress_step() END", false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pankha.compress_step() failed: %s", SPI_result_code_string(ret));
	else
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		*moved = isnull ? 0 : DatumGetInt64(d);
	}
}

/*
 * Cold storage: call pankha.compress_step() until it has nothing left,
 * each call in a transaction of its own (one partition and range of agents
 * each), for at most 30 seconds a pass so the other work is not held up.
 * A failed step is logged and tried again on the next pass.
 */
static void
worker_compress(void)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		int64		moved = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), 30 * 1000))
			return;
		if (!worker_transaction("pankha compression", compress_body, &moved) || moved == 0)
			return;
		elog(DEBUG1, "pankha worker compressed " INT64_FORMAT " frames", moved);
	}
}

/* Say in the log when the worker starts or stops doing its work, once. */
static void
worker_enter_state(WorkerState state)
{
	if (state == worker_state)
		return;
	worker_state = state;
	switch (state)
	{
		case WORKER_WORKING:
			elog(LOG, "pankha worker is maintaining database \"%s\"", pankha_database);
			break;
		case WORKER_IDLE_NO_EXTENSION:
			elog(LOG, "pankha worker is idle: extension \"pankha\" is not installed in database \"%s\"",
				 pankha_database);
			break;
		case WORKER_IDLE_RECOVERY:
			elog(LOG, "pankha worker is idle while the server is in recovery");
			break;
		case WORKER_IDLE_DISABLED:
			elog(LOG, "pankha worker is idle: pankha.worker_enabled is off");
			break;
		case WORKER_STARTING:
			break;
	}
}
