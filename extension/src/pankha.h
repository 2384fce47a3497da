/*-------------------------------------------------------------------------
 *
 * pankha.h
 *	  Declarations shared by the C files of the pankha extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PANKHA_H
#define PANKHA_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/lwlock.h"

/* GUC variables (pankha.c) */
extern char *pankha_database;
extern int	pankha_raw_retention;	/* minutes */
extern int	pankha_max_agents;
extern int	pankha_naptime;			/* seconds */
extern int	pankha_liveness_flush;	/* seconds */
extern bool pankha_worker_enabled;
extern int	pankha_rollup_1m_retention; /* minutes */
extern int	pankha_rollup_1h_retention; /* minutes */
extern int	pankha_rollup_hour_delay;	/* seconds */
extern int	pankha_offline_after;	/* seconds, 0 = automatic */
extern char *pankha_archive_directory;
extern char *pankha_bridge_id;

/* One agent's liveness, kept in shared memory instead of an UPDATE per frame. */
typedef struct PankhaLiveness
{
	char		agent_id[65];	/* hash key, NUL-terminated */
	TimestampTz last_seen;		/* server time of the newest frame */
	TimestampTz last_frame;		/* frame time (ts) of the newest frame */
	uint64		frames;			/* frames ingested since server start */
	bool		dirty;			/* last_seen not yet persisted */
} PankhaLiveness;

/* The extension's shared state. */
typedef struct PankhaShared
{
	LWLock	   *lock;			/* protects the liveness hash */
	pg_atomic_uint64 catalog_generation;	/* bumped when catalog rows go away */
	pg_atomic_uint64 frames_stored; /* since server start */
	pg_atomic_uint64 frames_rejected;
	int			worker_pid;		/* 0 when no worker runs */
} PankhaShared;

extern PankhaShared *pankha_shared;
extern struct HTAB *pankha_liveness;

/* pankha.c */
extern void pankha_require_preload(void);

/* liveness.c */
extern Size pankha_liveness_shmem_size(void);
extern bool pankha_note_frame(const char *agent_id, TimestampTz frame_ts,
							  TimestampTz now);

/* ingest.c */
extern const char *pankha_fan_status_name(int code);

/* live.c */
extern void pankha_live_load(void);
extern bool pankha_live_wants(const char *agent_id);
extern void pankha_live_announce(const char *agent_id, const char *frame, int len);

/* worker.c */
extern void pankha_register_worker(void);

/* cold.c */
extern void pankha_cold_planner_init(void);
extern void pankha_define_retention_gucs(void);

#endif							/* PANKHA_H */
