/*
 * db.h - PostgreSQL from inside the event loop (db.c): queries on lanes
 * of non-blocking pipelined connections, and NOTIFY dispatched by channel
 * to the handlers modules register.
 */
#ifndef PANKHA_DB_H
#define PANKHA_DB_H

#include <libpq-fe.h>

#include "server.h"

/* Which connections may run a query: ingest keeps commit order. */
enum db_lane
{
	LANE_INGEST = 0,
	LANE_GENERAL = 1,
	LANE_COUNT
};

struct db_query;
typedef void (*db_done_fn) (struct db_query *q, PGresult *res);

#define DB_MAX_PARAMS 8

/* A query waiting for, or running on, a database connection. */
struct db_query
{
	struct db_query *next;
	enum db_lane lane;
	const char *sql;			/* static text */
	int			nparams;
	char	   *params[DB_MAX_PARAMS];	/* owned copies (NULL: SQL NULL) */
	int			lengths[DB_MAX_PARAMS]; /* of binary parameters */
	int			formats[DB_MAX_PARAMS]; /* 0 text, 1 binary */
	db_done_fn	done;			/* called with the result, then freed */
	void	   *arg;			/* for done */
	lws_usec_t	sent_at;		/* when it went to the server */
	lws_usec_t	answered_at;	/* when its result came (a once query: before its COMMIT went) */
	bool		retry_on_error; /* re-run (bounded) on deadlock, serialization, resources */
	bool		result_kept;	/* done() kept the PGresult and will PQclear it */
	int			shard;			/* which connection runs it: ingest, the shard (db_ingest_shards());
								 * general, db_query_key()'s hash; -1: any */
	bool		once;			/* not idempotent: never replayed without knowing it did not commit */
	bool		one_trip;		/* once, its COMMIT pipelined behind it (one round trip, the
								 * connection not held): lost before its xid came back, it is
								 * sent again though it may have committed */

	/* db.c's own */
	int			attempts;		/* statement errors retried */
	int			losses;			/* connections lost with it in flight */
	int			phase;			/* once: 0 unsent, 1 BEGIN..query sent, 2 COMMIT sent, 3 checking */
	int			nres;			/* results seen in phase 1 */
	char		xid[24];		/* once: its transaction, from pg_current_xact_id() */
	PGresult   *saved;			/* once: the query's result, until its COMMIT */
	lws_usec_t	not_before;		/* delayed: when it may be sent again */
	uint64_t	serial;			/* submission order */
};

struct db_query *db_query_new(enum db_lane lane, const char *sql, db_done_fn done, void *arg);
int			db_query_param(struct db_query *q, const char *value, size_t len);
int			db_query_param_sbuf(struct db_query *q, struct sbuf *b);
void		db_query_key(struct db_query *q, const char *key);
void		db_query_free(struct db_query *q);
void		db_submit(struct db_query *q);
int			db_lane_load(enum db_lane lane);
int			db_ingest_shards(void);
int			db_shard_load(int shard);
bool		db_ready(void);
bool		db_listening(void);
int			db_init(struct lws_context *ctx, struct lws_vhost *vh);
void		db_shutdown(void);
bool		db_idle(void);
bool		db_error_is_data(PGresult *res);

/* A NOTIFY on a channel a module asked for, and LISTEN coming and going. */
typedef void (*db_notify_fn) (const char *channel, const char *payload);
typedef void (*db_event_fn) (void);
int			db_listen(const char *channel, db_notify_fn fn);
int			db_on_listen_ready(db_event_fn fn);
int			db_on_listen_lost(db_event_fn fn);


int			db_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
						void *in, size_t len);

/* The raw-file protocol the database sockets are adopted into. */
#define DB_PROTOCOL_NAME "pankha-db"
#define DB_PROTOCOL {DB_PROTOCOL_NAME, db_callback, 0, 0, 0, NULL, 0}

#endif							/* PANKHA_DB_H */
