/*
 * db.c - PostgreSQL from inside the libwebsockets event loop.
 *
 * A few non-blocking libpq connections in pipeline mode, plus one that
 * LISTENs.  Each connection's socket is dup()ed and adopted by lws as a raw
 * file, so readiness arrives as RAW_RX_FILE / RAW_WRITEABLE_FILE callbacks
 * and the loop never blocks on the database.  Queries wait in a FIFO per
 * lane; the ingest lane has one connection so batches commit in the order
 * they were sent.  When a connection is lost its queries go back to the
 * front of their lane and are sent again after the reconnect, with
 * exponential backoff; a general-lane query in flight at three losses in a
 * row fails instead of looping.
 *
 * Only a lost connection (libpq's, SQLSTATE class 08, 57P01-57P03) resets
 * one.  Any other error is that query's alone: deadlocks and serialization
 * failures (40P01, 40001), lock timeouts (55P03) and resource errors (53)
 * are retried, with a short delay and at most three times, when the query
 * allows it (retry_on_error); everything else, statement timeouts (57014)
 * included, goes to its done() like any result.
 *
 * A query that must not run twice (once: send_command, enrollment,
 * connection_opened, ...) runs as BEGIN; pg_current_xact_id(); the query;
 * sync, and only after those results arrive COMMIT; sync.  Lost before the
 * COMMIT went, it did not commit and is sent again; lost after, the new
 * connection asks pg_xact_status() of its transaction first: committed, its
 * saved result goes to done(); aborted, it is sent again; in progress (the
 * old backend has not noticed yet), it asks again shortly.
 *
 * Nothing here blocks: even WebSocket handshakes, which lws wants answered
 * inside its filter callback, are checked against the copy of the
 * credentials in credentials.c, kept fresh through the LISTEN connection.
 *
 * This file knows no consumer.  Modules register, before db_init(), the
 * channels they want (db_listen: the LISTEN connection listens on each and
 * hands every notification to its handlers, the way lws hands callbacks to
 * protocols) and what to do once a LISTEN round is in effect or lost
 * (db_on_listen_ready, db_on_listen_lost).
 */
#include "db.h"

#include <string.h>
#include <unistd.h>

/* Queries waiting for a connection, per lane. */
struct db_fifo
{
	struct db_query *head;
	struct db_query *tail;
	int			count;
};

/* One database connection and what it has in flight. */
struct db_conn
{
	PGconn	   *pg;				/* NULL while down */
	struct lws *wsi;			/* the adopted dup of PQsocket() */
	int			sock;			/* the PQsocket() that wsi duplicates */
	enum
	{
		DC_DOWN, DC_CONNECTING, DC_READY
	}			state;
	bool		is_listen;		/* the LISTEN connection */
	bool		listen_pending; /* its LISTEN statements not yet answered */
	bool		listen_failed;	/* one of them failed */
	enum db_lane lane;			/* which queries it runs */
	int			shard;			/* ingest: the shard whose batches it runs */
	struct db_fifo *fifo;		/* where queries for it alone wait (&own) */
	struct db_fifo own;
	int			max_depth;		/* queries in flight at most */
	int			depth;			/* queries in flight now */
	struct db_query *head;		/* in flight, oldest first */
	struct db_query *tail;
	PGresult   *head_result;	/* the head query's result, until its sync */
	bool		want_write;		/* output not yet flushed */
	bool		held;			/* a once query awaits its COMMIT: send nothing else */
	int			backoff_ms;		/* next reconnect delay */
	bool		was_up;			/* has been connected before */
	struct btimer retry;		/* reconnect timer */
	struct btimer writable;		/* asks lws for POLLOUT from outside its callback */
};


static struct db_conn *conns;
static int	nconns;
static struct db_fifo waiting[LANE_COUNT];	/* general queries without a key */
static int	nshards;			/* ingest connections, from conns[1] */
static int	ngeneral;			/* general connections, after them */
static int	shard_conn0 = 1, general_conn0;
static struct lws_vhost *db_vh;
static bool shutting_down;

/* What modules registered: channels with their handlers, and LISTEN events. */
#define DB_MAX_CHANNELS 16
#define DB_MAX_HOOKS 8
static struct
{
	const char *channel;
	db_notify_fn fn;
}			channels[DB_MAX_CHANNELS];
static int	nchannels;
static db_event_fn ready_hooks[DB_MAX_HOOKS], lost_hooks[DB_MAX_HOOKS];
static int	nready, nlost;
static char *listen_sql;		/* "LISTEN a; LISTEN b; ..." of the registered channels */

/* Queries waiting to be retried (not_before), and the timer that returns them. */
static struct db_query *delayed;
static struct btimer delayed_timer;

#define DB_MAX_ATTEMPTS 3		/* statement-error retries of one query */
#define DB_MAX_LOSSES 3			/* lost connections a general-lane query survives */
#define XACT_STATUS_SQL "SELECT pg_catalog.pg_xact_status($1::pg_catalog.xid8)"

static void dc_connect(struct db_conn *dc);
static void dc_lost(struct db_conn *dc, const char *why);
static void dc_dispatch(struct db_conn *dc, int limit, bool shared);
static void kick_conn(struct db_conn *dc);
static void dc_flush(struct db_conn *dc);
static int	dc_adopt(struct db_conn *dc);
static void dc_detach(struct db_conn *dc);
static void dc_service(struct db_conn *dc);
static void dc_retry_cb(lws_sorted_usec_list_t *sul);
static void lane_kick(enum db_lane lane);
static void dc_want_write(struct db_conn *dc);

/*
 * Hand every NOTIFY on channel to fn (channel a plain lower-case name).
 * Called before db_init(); -1 when the name is not one or the table is full.
 */
int
db_listen(const char *channel, db_notify_fn fn)
{
	if (conns || nchannels >= DB_MAX_CHANNELS || !channel[0] ||
		strspn(channel, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(channel))
		return -1;
	channels[nchannels].channel = channel;
	channels[nchannels].fn = fn;
	nchannels++;
	return 0;
}

/*
 * Call fn each time every LISTEN of the LISTEN connection has been
 * answered (at start and after each reconnect): from then on no
 * notification goes unheard, though some may have been missed before.
 */
int
db_on_listen_ready(db_event_fn fn)
{
	if (nready >= DB_MAX_HOOKS)
		return -1;
	ready_hooks[nready++] = fn;
	return 0;
}

/* Call fn when the LISTEN connection is lost: notifications may be missed from now. */
int
db_on_listen_lost(db_event_fn fn)
{
	if (nlost >= DB_MAX_HOOKS)
		return -1;
	lost_hooks[nlost++] = fn;
	return 0;
}

/* Make a query for lane; parameters are added with db_query_param(). */
struct db_query *
db_query_new(enum db_lane lane, const char *sql, db_done_fn done, void *arg)
{
	struct db_query *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->lane = lane;
	q->sql = sql;
	q->done = done;
	q->arg = arg;
	q->retry_on_error = true;
	q->shard = -1;
	return q;
}

/* Append a text parameter (value NULL means SQL NULL); -1 on failure. */
int
db_query_param(struct db_query *q, const char *value, size_t len)
{
	if (q->nparams >= DB_MAX_PARAMS)
		return -1;
	if (value)
	{
		char	   *copy = xstrndup(value, len);

		if (!copy)
			return -1;
		q->params[q->nparams] = copy;
	}
	else
		q->params[q->nparams] = NULL;
	q->nparams++;
	return 0;
}

/* Add a binary parameter: the query takes over b's buffer. */
int
db_query_param_sbuf(struct db_query *q, struct sbuf *b)
{
	if (q->nparams >= DB_MAX_PARAMS || b->failed || !b->data || b->len > INT32_MAX)
		return -1;
	q->params[q->nparams] = b->data;
	q->lengths[q->nparams] = (int) b->len;
	q->formats[q->nparams] = 1;
	q->nparams++;
	memset(b, 0, sizeof(*b));
	return 0;
}

/* Free a query and its parameters. */
void
db_query_free(struct db_query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	PQclear(q->saved);
	free(q);
}

static void
fifo_push(struct db_fifo *f, struct db_query *q)
{
	q->next = NULL;
	if (f->tail)
		f->tail->next = q;
	else
		f->head = q;
	f->tail = q;
	f->count++;
}

static struct db_query *
fifo_pop(struct db_fifo *f)
{
	struct db_query *q = f->head;

	if (!q)
		return NULL;
	f->head = q->next;
	if (!f->head)
		f->tail = NULL;
	f->count--;
	q->next = NULL;
	return q;
}

/* The connection a query must run on (its shard, or its key's), or NULL: any of its lane. */
static struct db_conn *
conn_of(struct db_query *q)
{
	if (!conns)
		return NULL;
	if (q->lane == LANE_INGEST)
		return &conns[shard_conn0 + (q->shard < 0 ? 0 : q->shard) % nshards];
	if (q->shard >= 0)
		return &conns[general_conn0 + q->shard % ngeneral];
	return NULL;
}

/* Where a query waits: its connection's own list, or the general lane's. */
static struct db_fifo *
fifo_of(struct db_query *q)
{
	struct db_conn *dc = conn_of(q);

	return dc ? &dc->own : &waiting[q->lane];
}

static void
fifo_push_front(struct db_fifo *f, struct db_query *q)
{
	q->next = f->head;
	f->head = q;
	if (!f->tail)
		f->tail = q;
	f->count++;
}

static void
delayed_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	now = now_us(), next = 0;
	struct db_query **pp = &delayed;
	bool		kick[LANE_COUNT] = {false};

	while (*pp)
	{
		struct db_query *q = *pp;

		if (q->not_before <= now)
		{
			*pp = q->next;
			fifo_push_front(fifo_of(q), q);
			kick[q->lane] = true;
			continue;
		}
		if (!next || q->not_before < next)
			next = q->not_before;
		pp = &q->next;
	}
	if (next)
		timer_schedule(&delayed_timer, delayed_cb, next - now);
	for (int l = 0; l < LANE_COUNT; l++)
		if (kick[l])
			lane_kick(l);
}

/* Send q again after delay_ms, ahead of what waits then. */
static void
delay_query(struct db_query *q, int delay_ms)
{
	q->not_before = now_us() + (lws_usec_t) delay_ms * LWS_US_PER_MS;
	q->next = delayed;
	delayed = q;
	timer_schedule(&delayed_timer, delayed_cb, (lws_usec_t) delay_ms * LWS_US_PER_MS);
}

/*
 * Run q on the general connection key (an agent id) maps to, after the
 * queries for the same key before it: what one agent's connection records
 * (opened, status, closed) must commit in the order it happened.
 */
void
db_query_key(struct db_query *q, const char *key)
{
	uint32_t	h = 2166136261u;	/* FNV-1a */

	for (const unsigned char *p = (const unsigned char *) key; *p; p++)
		h = (h ^ *p) * 16777619u;
	q->shard = (int) (h & 0x7fffffff);
}

/* Queue a query; it runs when a connection of its lane has room. */
void
db_submit(struct db_query *q)
{
	static uint64_t serial;
	struct db_conn *dc = conn_of(q);

	q->serial = ++serial;
	fifo_push(fifo_of(q), q);
	if (dc)
		dc_dispatch(dc, -1, false);
	else
		lane_kick(q->lane);
}

/* Queries of a lane waiting or in flight. */
int
db_lane_load(enum db_lane lane)
{
	int			n = waiting[lane].count;

	for (struct db_query *q = delayed; q; q = q->next)
		n += q->lane == lane;
	for (int i = 0; i < nconns; i++)
		if (!conns[i].is_listen && conns[i].lane == lane)
			n += conns[i].depth + conns[i].own.count;
	return n;
}

/* How many ingest connections (shards) there are: batches name one in q->shard. */
int
db_ingest_shards(void)
{
	return nshards ? nshards : 1;
}

/* Ingest batches of a shard waiting or in flight. */
int
db_shard_load(int shard)
{
	int			n;

	if (!nshards)
		return 0;
	shard %= nshards;
	n = conns[shard_conn0 + shard].own.count + conns[shard_conn0 + shard].depth;
	for (struct db_query *q = delayed; q; q = q->next)
		n += q->lane == LANE_INGEST && q->shard % nshards == shard;
	return n;
}

/* Ready when the LISTEN connection and every lane have a live connection. */
bool
db_ready(void)
{
	bool		lane_up[LANE_COUNT] = {false};
	bool		listen_up = false;

	for (int i = 0; i < nconns; i++)
	{
		if (conns[i].state != DC_READY)
			continue;
		if (conns[i].is_listen)
			listen_up = true;
		else
			lane_up[conns[i].lane] = true;
	}
	for (int l = 0; l < LANE_COUNT; l++)
		if (!lane_up[l])
			return false;
	return listen_up;
}

/* True when the LISTEN connection is up and every LISTEN of it answered. */
bool
db_listening(void)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i].is_listen)
			return conns[i].state == DC_READY && !conns[i].listen_pending &&
				!conns[i].listen_failed;
	return false;
}

/* True when nothing waits or runs on any lane. */
bool
db_idle(void)
{
	for (int l = 0; l < LANE_COUNT; l++)
		if (db_lane_load(l))
			return false;
	return true;
}

/*
 * True when an error result is about the query's data (so sending it again
 * would fail again) rather than about the server or the connection.
 */
bool
db_error_is_data(PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (!state)
		return false;
	return !strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
		!strncmp(state, "P0", 2) || !strncmp(state, "02", 2) ||
		!strncmp(state, "42", 2) || !strncmp(state, "44", 2);
}

/*
 * Send what waits.  Ingest shards each have their connection; a general
 * query goes to the ready connection with the least in flight, and not
 * behind one that has been running for a while (a slow query holds up only
 * what was pipelined behind it before that showed).
 */
static void
lane_kick(enum db_lane lane)
{
	lws_usec_t	now = now_us();

	for (;;)
	{
		struct db_conn *best = NULL;
		int			best_score = 0;

		/* each connection's own queries older than the lane's oldest */
		for (int i = 0; i < nconns; i++)
			if (!conns[i].is_listen && conns[i].lane == lane && conns[i].state == DC_READY)
				dc_dispatch(&conns[i], -1, false);
		if (!waiting[lane].head)
			return;

		for (int i = 0; i < nconns; i++)
		{
			struct db_conn *dc = &conns[i];
			int			score;

			if (dc->is_listen || dc->lane != lane || dc->state != DC_READY || dc->held ||
				dc->depth >= dc->max_depth)
				continue;
			score = dc->depth;
			if (dc->head && now - dc->head->sent_at > 20 * LWS_US_PER_MS)
				score += 1000;
			if (!best || score < best_score)
			{
				best = dc;
				best_score = score;
			}
		}
		if (!best)
			return;
		dc_dispatch(best, 1, true);
	}
}

/* After a connection's results: send what waits for it (or its lane). */
static void
kick_conn(struct db_conn *dc)
{
	if (dc->lane == LANE_INGEST)
		dc_dispatch(dc, -1, false);
	else
		lane_kick(dc->lane);
}

/*
 * Send up to limit (-1: any number) waiting queries while the connection
 * has pipeline room: its own first, then (shared) its lane's.
 */
static void
dc_dispatch(struct db_conn *dc, int limit, bool shared)
{
	struct db_fifo *f = dc->fifo;
	bool		sent = false;

	while (dc->state == DC_READY && !dc->held && dc->depth < dc->max_depth && limit != 0 &&
		   (shared ? (f->head || waiting[dc->lane].head) :
			(f->head && (!waiting[dc->lane].head ||
						 f->head->serial < waiting[dc->lane].head->serial))))
	{
		struct db_query *q;
		struct db_fifo *lane_f = &waiting[dc->lane];

		/* the older of its own and (shared) the lane's: submission order, no starving */
		if (!f->head || (shared && lane_f->head && lane_f->head->serial < f->head->serial))
			f = lane_f;
		q = f->head;
		const char *values[DB_MAX_PARAMS];
		int			ok;

		for (int i = 0; i < q->nparams; i++)
			values[i] = q->params[i];
		if (q->phase == 3)
		{
			/* did it commit on the connection that was lost? */
			const char *xid = q->xid;

			ok = PQsendQueryParams(dc->pg, XACT_STATUS_SQL, 1, NULL, &xid, NULL, NULL, 0);
		}
		else if (q->once)
		{
			/* the transaction's id first, the COMMIT once that is known */
			ok = PQsendQueryParams(dc->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
				PQsendQueryParams(dc->pg, "SELECT pg_catalog.pg_current_xact_id()::text",
								  0, NULL, NULL, NULL, NULL, 0) &&
				PQsendQueryParams(dc->pg, q->sql, q->nparams, NULL, values,
								  q->lengths, q->formats, 0);
			q->phase = 1;
			q->nres = 0;
			q->xid[0] = '\0';
			/* one trip: the COMMIT (a ROLLBACK if the query failed) right behind */
			if (q->one_trip)
				ok = ok && PQpipelineSync(dc->pg) &&
					PQsendQueryParams(dc->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
			else
				dc->held = true;
		}
		else
			ok = PQsendQueryParams(dc->pg, q->sql, q->nparams, NULL, values,
								   q->lengths, q->formats, 0);
		if (!ok || !PQpipelineSync(dc->pg))
		{
			dc_lost(dc, PQerrorMessage(dc->pg));
			return;
		}
		fifo_pop(f);
		f = dc->fifo;
		q->sent_at = now_us();
		if (dc->tail)
			dc->tail->next = q;
		else
			dc->head = q;
		dc->tail = q;
		dc->depth++;
		sent = true;
		if (limit > 0)
			limit--;
	}
	if (sent)
		dc_flush(dc);
}

/* Push buffered output to the server; ask for writability if it remains. */
static void
dc_flush(struct db_conn *dc)
{
	int			r = PQflush(dc->pg);

	if (r < 0)
	{
		dc_lost(dc, PQerrorMessage(dc->pg));
		return;
	}
	dc->want_write = (r == 1);
	if (dc->want_write)
		dc_want_write(dc);
}

/* An error that may not recur if the query runs again a little later. */
static bool
error_is_transient(PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return PQresultStatus(res) == PGRES_FATAL_ERROR && state &&
		(!strcmp(state, "40001") || !strcmp(state, "40P01") ||
		 !strcmp(state, "55P03") || !strncmp(state, "53", 2));
}

/* Forget a once query's transaction: it did not commit, it may be sent anew. */
static void
once_reset(struct db_query *q)
{
	q->phase = 0;
	q->nres = 0;
	q->xid[0] = '\0';
	PQclear(q->saved);
	q->saved = NULL;
}

/*
 * The answer of a pg_xact_status() check; true when q is done with (its
 * saved result is the one), false when it has been queued again.
 */
static bool
check_answered(struct db_query *q, PGresult *res)
{
	const char *st = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;

	if (st && !strcmp(st, "committed"))
		return true;
	if (st && !strcmp(st, "aborted"))
	{
		blog("info", "db_replay", "a query lost with its connection did not commit: sending it again");
		once_reset(q);
		fifo_push_front(fifo_of(q), q);
		return false;
	}
	/* in progress (the old backend lives on a little), or the check failed */
	delay_query(q, 100);
	return false;
}

/* Hand the head query its result and take it off the connection. */
static void
dc_complete_head(struct db_conn *dc)
{
	struct db_query *q = dc->head;
	PGresult   *res = dc->head_result;

	dc->head_result = NULL;
	if (!q)
	{
		PQclear(res);
		return;
	}
	dc->head = q->next;
	if (!dc->head)
		dc->tail = NULL;
	dc->depth--;
	q->next = NULL;
	q->losses = 0;

	if (q->phase == 3)
	{
		bool		done = check_answered(q, res);

		PQclear(res);
		if (!done)
			return;
		res = q->saved;
		q->saved = NULL;
	}
	else if (q->once)
	{
		PQclear(res);			/* COMMIT's (its error, if any, is in saved) */
		res = q->saved;
		q->saved = NULL;
	}
	if (!res)
		res = PQmakeEmptyPGresult(dc->pg, PGRES_FATAL_ERROR);
	if (q->retry_on_error && q->attempts < DB_MAX_ATTEMPTS && error_is_transient(res))
	{
		/* the query's own failure, likely not to recur: that query alone again */
		q->attempts++;
		blog("warn", "db_retry_query", "%s: retry %d of %d",
			 PQresultErrorField(res, PG_DIAG_SQLSTATE), q->attempts, DB_MAX_ATTEMPTS);
		PQclear(res);
		if (q->once)
			once_reset(q);
		delay_query(q, 50 * q->attempts);
		return;
	}
	if (now_us() - q->sent_at > 500 * LWS_US_PER_MS)
		blog("warn", "db_slow", "%s connection %d: %.0f ms for %.60s", dc->lane == LANE_INGEST ?
			 "ingest" : "general", (int) (dc - conns),
			 (double) (now_us() - q->sent_at) / 1e3, q->sql);
	if (!q->once)
		q->answered_at = now_us();
	if (dc->lane == LANE_INGEST)
		histogram_observe(&srv.m.commit_seconds,
						  (double) (now_us() - q->sent_at) / 1e6);
	if (q->done)
		q->done(q, res);
	if (!q->result_kept)
		PQclear(res);
	db_query_free(q);
}

/* A result that means the server or connection failed, not the query. */
static bool
result_is_connection_failure(PGconn *pg, PGresult *res)
{
	const char *state;

	if (PQresultStatus(res) != PGRES_FATAL_ERROR)
		return false;
	if (PQstatus(pg) == CONNECTION_BAD)
		return true;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	/* libpq's own errors carry no SQLSTATE; 25006: a standby, look for the primary */
	return !state || !strncmp(state, "08", 2) || !strcmp(state, "57P01") ||
		!strcmp(state, "57P02") || !strcmp(state, "57P03") || !strcmp(state, "25006");
}

/* Read what the server sent: notifications and query results. */
static void
dc_service(struct db_conn *dc)
{
	PGnotify   *n;

	if (!PQconsumeInput(dc->pg))
	{
		dc_lost(dc, PQerrorMessage(dc->pg));
		return;
	}
	while ((n = PQnotifies(dc->pg)) != NULL)
	{
		for (int i = 0; i < nchannels; i++)
			if (!strcmp(channels[i].channel, n->relname))
				channels[i].fn(n->relname, n->extra);
		PQfreemem(n);
	}

	if (dc->is_listen)
	{
		while (dc->listen_pending && !PQisBusy(dc->pg))
		{
			PGresult   *r = PQgetResult(dc->pg);

			if (!r)
			{
				/* every LISTEN answered: from now on no change goes unheard */
				dc->listen_pending = false;
				if (dc->listen_failed)
				{
					dc_lost(dc, "LISTEN failed");
					return;
				}
				for (int i = 0; i < nready; i++)
					ready_hooks[i] ();
				break;
			}
			if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
			{
				blog("error", "db_listen", "LISTEN failed: %s", PQresultErrorMessage(r));
				dc->listen_failed = true;
			}
			PQclear(r);
		}
		return;
	}

	/*
	 * Pipeline mode: each query yields its result(s), a NULL, then the
	 * PGRES_PIPELINE_SYNC of the sync sent after it.  The query completes
	 * at its sync.
	 */
	while (dc->head && dc->state == DC_READY && !PQisBusy(dc->pg))
	{
		PGresult   *r = PQgetResult(dc->pg);

		if (!r)
		{
			if (PQisBusy(dc->pg))
				break;
			/* between a query's NULL and its sync; look again */
			r = PQgetResult(dc->pg);
			if (!r)
				break;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
		{
			PQclear(r);
			if (dc->head->phase == 1)
			{
				/* BEGIN, its xid and the query answered: now end it */
				struct db_query *q = dc->head;

				bool		failed = !q->saved || PQresultStatus(q->saved) == PGRES_FATAL_ERROR ||
					!q->xid[0];

				q->answered_at = now_us();
				if (q->one_trip)
				{
					/* its COMMIT went with it: wait for that one's sync */
					q->phase = 2;
					if (!q->saved)
						q->saved = PQmakeEmptyPGresult(dc->pg, PGRES_FATAL_ERROR);
					continue;
				}

				if (!PQsendQueryParams(dc->pg, failed ? "ROLLBACK" : "COMMIT", 0, NULL, NULL,
									   NULL, NULL, 0) || !PQpipelineSync(dc->pg))
				{
					dc_lost(dc, PQerrorMessage(dc->pg));
					return;
				}
				q->phase = failed ? 0 : 2;	/* rolled back: nothing to check if lost */
				if (failed && !q->saved)
					q->saved = PQmakeEmptyPGresult(dc->pg, PGRES_FATAL_ERROR);
				dc->held = false;
				dc_flush(dc);
				if (dc->state != DC_READY)
					return;
				continue;
			}
			dc_complete_head(dc);
			continue;
		}
		if (result_is_connection_failure(dc->pg, r))
		{
			char	   *why = xstrndup(PQresultErrorMessage(r), 200);

			PQclear(r);
			dc_lost(dc, why ? why : "connection failure");
			free(why);
			return;
		}
		if (dc->head->phase == 1)
		{
			/* BEGIN, the xid, the query: keep the xid and the first error or the query's */
			struct db_query *q = dc->head;

			q->nres++;
			if (q->nres == 2 && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
				snprintf(q->xid, sizeof(q->xid), "%s", PQgetvalue(r, 0, 0));
			if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
				!(q->saved && PQresultStatus(q->saved) == PGRES_FATAL_ERROR))
			{
				PQclear(q->saved);
				q->saved = r;
			}
			else if (q->nres == 3 && !q->saved)
				q->saved = r;
			else
				PQclear(r);
			continue;
		}
		if (dc->head->once && dc->head->phase == 2 && PQresultStatus(r) == PGRES_FATAL_ERROR)
		{
			/* the COMMIT failed: nothing committed, that is the outcome */
			PQclear(dc->head->saved);
			dc->head->saved = r;
			continue;
		}
		if (!dc->head_result)
			dc->head_result = r;
		else
			PQclear(r);			/* only one result per query is expected */
	}
	if (dc->state == DC_READY)
		kick_conn(dc);
}

/* Advance a non-blocking connect. */
static void
dc_poll_connect(struct db_conn *dc)
{
	PostgresPollingStatusType st = PQconnectPoll(dc->pg);


	if (PQsocket(dc->pg) != dc->sock && st != PGRES_POLLING_FAILED)
	{
		/* libpq moved to another socket (another host or address) */
		dc_detach(dc);
		if (dc_adopt(dc))
		{
			dc_lost(dc, "cannot watch the database socket");
			return;
		}
	}
	switch (st)
	{
		case PGRES_POLLING_OK:
			dc->state = DC_READY;
			dc->backoff_ms = 100;
			if (PQsetnonblocking(dc->pg, 1))
			{
				dc_lost(dc, "cannot make the connection non-blocking");
				return;
			}
			if (dc->was_up)
				srv.m.db_reconnects++;
			blog("info", "db_connected", "%s connection %d up%s",
				 dc->is_listen ? "listen" : (dc->lane == LANE_INGEST ? "ingest" : "general"),
				 (int) (dc - conns), dc->was_up ? " again" : "");
			if (dc->is_listen)
			{
				/*
				 * The ready hooks run once this is answered, not now: a
				 * change committed before the server takes the LISTEN
				 * would be neither notified nor seen by what they query.
				 */
				if (!PQsendQuery(dc->pg, listen_sql))
				{
					dc_lost(dc, PQerrorMessage(dc->pg));
					return;
				}
				dc->listen_pending = true;
				dc->listen_failed = false;
				dc_flush(dc);
			}
			else
			{
				if (!PQenterPipelineMode(dc->pg))
				{
					dc_lost(dc, PQerrorMessage(dc->pg));
					return;
				}
				kick_conn(dc);
			}
			dc->was_up = true;
			break;
		case PGRES_POLLING_FAILED:
			dc_lost(dc, PQerrorMessage(dc->pg));
			break;
		case PGRES_POLLING_WRITING:
			dc_want_write(dc);
			break;
		default:
			break;				/* reading: wait for RAW_RX_FILE */
	}
}

/* Watch a dup() of the connection's socket from the lws loop. */
static int
dc_adopt(struct db_conn *dc)
{
	lws_adopt_desc_t info;
	int			fd;

	dc->sock = PQsocket(dc->pg);
	if (dc->sock < 0)
		return -1;
	fd = dup(dc->sock);
	if (fd < 0)
		return -1;
	memset(&info, 0, sizeof(info));
	info.vh = db_vh;
	info.type = LWS_ADOPT_RAW_FILE_DESC;
	info.fd.filefd = fd;
	info.vh_prot_name = DB_PROTOCOL_NAME;
	info.opaque = dc;
	dc->wsi = lws_adopt_descriptor_vhost_via_info(&info);
	return dc->wsi ? 0 : -1;	/* lws closed fd on failure */
}

/* Stop watching the socket; lws closes the duplicate soon after. */
static void
dc_detach(struct db_conn *dc)
{
	if (dc->wsi)
	{
		lws_set_opaque_user_data(dc->wsi, NULL);
		lws_set_timeout(dc->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		dc->wsi = NULL;
	}
}

/* Server notices and libpq's own messages go to the log, not stderr. */
static void
db_notice(void *arg, const char *message)
{
	blog("info", "db_notice", "%.*s", (int) strcspn(message, "\n"), message);
}

/* Start connecting (called at startup and by the retry timer). */
static void
dc_connect(struct db_conn *dc)
{
	/*
	 * The general lane runs the dashboard API: the statement_timeout of
	 * pankha.api_limits() (docs/api-functions.md), and no JIT for its
	 * short calls.  A function cannot set it for the statement running it.
	 */
	const char *keys[] = {"dbname", "application_name", "connect_timeout", "options", NULL};
	char		options[512];
	const char *vals[] = {srv.cfg.db, "pankha-bridge", "5", options, NULL};
	size_t		o;

	/*
	 * pankha.bridge_id names this bridge to the extension: ingest does not
	 * announce on pankha_live the frames of its own agents (live.c).
	 * Spaces and backslashes of the name are escaped for libpq's options.
	 */
	o = (size_t) snprintf(options, sizeof(options), "%s-c pankha.bridge_id=",
						  dc->lane == LANE_GENERAL && !dc->is_listen ?
						  "-c statement_timeout=5s -c jit=off " : "");
	for (const char *p = srv.bridge_id; *p && o + 3 < sizeof(options); p++)
	{
		if (*p == ' ' || *p == '\\')
			options[o++] = '\\';
		options[o++] = *p;
	}
	options[o] = '\0';

	if (shutting_down)
		return;
	dc->pg = PQconnectStartParams(keys, vals, 1);
	if (!dc->pg || PQstatus(dc->pg) == CONNECTION_BAD)
	{
		dc_lost(dc, dc->pg ? PQerrorMessage(dc->pg) : "out of memory");
		return;
	}
	dc->state = DC_CONNECTING;
	PQsetNoticeProcessor(dc->pg, db_notice, dc);
	if (dc_adopt(dc))
	{
		dc_lost(dc, "cannot watch the database socket");
		return;
	}
	/* a fresh connect first waits for the socket to become writable */
	dc_want_write(dc);
}

/*
 * The connection failed: put its queries back at the front of their lane,
 * in order, and try again later.  A once query whose COMMIT went out is
 * checked before anything else; a general-lane query lost with DB_MAX_LOSSES
 * connections in a row fails (it may be what kills them).
 */
static void
dc_lost(struct db_conn *dc, const char *why)
{
	struct db_query *failed = NULL;
	struct db_query *back = NULL;	/* to requeue, newest first */

	/* one line when it goes, then one per retry only at the longest backoff */
	if (dc->state == DC_READY || dc->backoff_ms >= 5000)
		blog("warn", dc->state == DC_READY ? "db_lost" : "db_retry", "%s connection %d: %.*s",
			 dc->is_listen ? "listen" : "pool", (int) (dc - conns),
			 (int) strcspn(why ? why : "", "\n"), why ? why : "");
	dc_detach(dc);
	if (dc->is_listen)
	{
		dc->listen_pending = false;
		for (int i = 0; i < nlost; i++)
			lost_hooks[i] ();
	}
	if (dc->head_result)
	{
		PQclear(dc->head_result);
		dc->head_result = NULL;
	}
	dc->held = false;
	for (struct db_query **pp = &dc->head; *pp;)
	{
		struct db_query *q = *pp;

		/* (a one-trip query's COMMIT went with it: it may have committed) */
		if (q->once && (q->phase == 2 || (q->phase == 1 && q->one_trip)))
			q->phase = q->xid[0] ? 3 : 0;
		if (q->phase != 3)
			once_reset(q);
		if (dc->lane == LANE_GENERAL && ++q->losses >= DB_MAX_LOSSES && q->phase != 3)
		{
			*pp = q->next;
			dc->depth--;
			q->next = failed;
			failed = q;
			continue;
		}
		dc->tail = q;
		pp = &q->next;
	}
	/* back to the front of where each waits (this connection's own, or the lane's), in order */
	while (dc->head)
	{
		struct db_query *q = dc->head;

		dc->head = q->next;
		q->next = back;
		back = q;
	}
	dc->tail = NULL;
	dc->depth = 0;
	while (back)
	{
		struct db_query *q = back;

		back = q->next;
		fifo_push_front(fifo_of(q), q);
	}
	if (dc->pg)
		PQfinish(dc->pg);
	dc->pg = NULL;
	dc->state = DC_DOWN;
	dc->want_write = false;
	while (failed)
	{
		struct db_query *q = failed;
		PGresult   *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);

		failed = q->next;
		q->next = NULL;
		blog("error", "db_query_failed", "a query was in flight at %d lost connections: given up",
			 q->losses);
		if (q->done)
			q->done(q, res);
		if (!q->result_kept)
			PQclear(res);
		db_query_free(q);
	}
	if (shutting_down)
		return;
	timer_schedule(&dc->retry, dc_retry_cb,
					 (lws_usec_t) dc->backoff_ms * LWS_US_PER_MS);
	dc->backoff_ms = dc->backoff_ms < 5000 ? dc->backoff_ms * 2 : 5000;
}

static void
dc_writable_cb(lws_sorted_usec_list_t *sul)
{
	struct db_conn *dc = lws_container_of(sul, struct db_conn, writable.sul);

	if (dc->wsi)
		lws_callback_on_writable(dc->wsi);
}

/*
 * Ask for a RAW_WRITEABLE_FILE callback.  lws drops a request made inside
 * the raw file's own WRITEABLE callback, so it is made from a timer.
 */
static void
dc_want_write(struct db_conn *dc)
{
	timer_schedule(&dc->writable, dc_writable_cb, 1);
}

static void
dc_retry_cb(lws_sorted_usec_list_t *sul)
{
	struct db_conn *dc = lws_container_of(sul, struct db_conn, retry.sul);

	dc_connect(dc);
}

/* The raw-file protocol the database sockets are adopted into. */
int
db_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			void *in, size_t len)
{
	struct db_conn *dc = lws_get_opaque_user_data(wsi);

	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			if (!dc || dc->wsi != wsi)
				return -1;
			if (dc->state == DC_CONNECTING)
				dc_poll_connect(dc);
			else if (dc->state == DC_READY)
				dc_service(dc);
			break;
		case LWS_CALLBACK_RAW_WRITEABLE_FILE:
			if (!dc || dc->wsi != wsi)
				return -1;
			if (dc->state == DC_CONNECTING)
				dc_poll_connect(dc);
			else if (dc->state == DC_READY && dc->want_write)
				dc_flush(dc);
			break;
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			if (dc && dc->wsi == wsi)
			{
				dc->wsi = NULL;
				if (dc->state != DC_DOWN)
					dc_lost(dc, "socket closed");
			}
			break;
		default:
			break;
	}
	return 0;
}


/* Create the connections and start connecting them. */
int
db_init(struct lws_context *ctx, struct lws_vhost *vh)
{
	struct sbuf sql = {0};

	db_vh = vh;
	for (int i = 0; i < nchannels; i++)
	{
		bool		dup = false;

		for (int k = 0; k < i; k++)
			dup = dup || !strcmp(channels[k].channel, channels[i].channel);
		if (!dup)
			sbuf_printf(&sql, "%sLISTEN %s", sql.len ? "; " : "", channels[i].channel);
	}
	/* with nothing to listen to, the round still says when the connection is up */
	if (!sql.len)
		sbuf_puts(&sql, "SELECT");
	if (sql.failed)
		return -1;
	listen_sql = sql.data;
	/* LISTEN, the ingest shards, then --db-pool general connections */
	nshards = srv.cfg.ingest_connections < 1 ? 1 : srv.cfg.ingest_connections;
	ngeneral = srv.cfg.db_pool < 1 ? 1 : srv.cfg.db_pool;
	general_conn0 = shard_conn0 + nshards;
	nconns = 1 + nshards + ngeneral;
	conns = calloc(nconns, sizeof(*conns));
	if (!conns)
		return -1;
	for (int i = 0; i < nconns; i++)
	{
		struct db_conn *dc = &conns[i];

		dc->is_listen = (i == 0);
		dc->lane = (i >= shard_conn0 && i < shard_conn0 + nshards) ? LANE_INGEST : LANE_GENERAL;
		dc->shard = dc->lane == LANE_INGEST ? i - shard_conn0 : -1;
		dc->fifo = &dc->own;
		dc->max_depth = dc->lane == LANE_INGEST ? srv.cfg.pipeline_depth : 32;
		dc->backoff_ms = 100;
		dc_connect(dc);
	}
	return 0;
}

/* Close every connection (the loop is ending). */
void
db_shutdown(void)
{
	shutting_down = true;
	timer_cancel(&delayed_timer);
	for (int i = 0; i < nconns; i++)
	{
		struct db_conn *dc = &conns[i];

		timer_cancel(&dc->retry);
		timer_cancel(&dc->writable);
		dc_detach(dc);
		if (dc->pg)
			PQfinish(dc->pg);
		dc->pg = NULL;
		dc->state = DC_DOWN;
	}
	free(listen_sql);
	listen_sql = NULL;
}
