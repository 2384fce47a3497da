/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pankha background worker.
 *
 * One worker per server, connected to the database named by
 * pankha.database.  Each pass runs in its own transaction: it skips the
 * work while the server is in recovery or the extension is not installed,
 * and otherwise calls pankha.maintain(), which persists liveness and keeps
 * partitions ahead.  An error in a pass is logged and the worker carries
 * on with the next one; it never takes the server down.
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
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void PankhaWorkerMain(Datum main_arg);

static bool worker_pass(void);

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
		}

		oldcxt = MemoryContextSwitchTo(pass_context);
		if (pankha_worker_enabled && !RecoveryInProgress())
			worker_pass();
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
 * One pass in one transaction.  Returns false when it failed; the error
 * has been logged and the transaction rolled back.
 */
static bool
worker_pass(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pankha maintenance");

	PG_TRY();
	{
		int			ret;

		SPI_connect();
		ret = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pankha'",
						  true, 1);
		if (ret == SPI_OK_SELECT && SPI_processed == 1)
		{
			ret = SPI_execute("SELECT pankha.maintain()", false, 0);
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "pankha.maintain() failed: %s", SPI_result_code_string(ret));
		}
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
