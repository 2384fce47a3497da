/*
 * db.c - PostgreSQL from inside the libwebsockets event loop.
 *
 * A few non-blocking libpq connections in pipeline mode, plus one that
 * LISTENs.  Each connection's socket is dup()ed and adopted by lws as a raw
 * file, so readiness arrives as RAW_RX_FILE / RAW_WRITEABLE_FILE callbacks
 * and the loop never blocks on the database.  Queries wait in a FIFO per
 * lane; the ingest lane has one connection so batches commit in the order
 * they were sent.  When a connection is lost its queries go back to the
 * front of their lane and are sent again after the reconnect (everything
 * the bridge sends is idempotent), with exponential backoff.
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
	int			max_depth;		/* queries in flight at most */
	int			depth;			/* queries in flight now */
	struct db_query *head;		/* in flight, oldest first */
	struct db_query *tail;
	PGresult   *head_result;	/* the head query's result, until its sync */
	bool		want_write;		/* output not yet flushed */
	int			backoff_ms;		/* next reconnect delay */
	bool		was_up;			/* has been connected before */
	struct btimer retry;		/* reconnect timer */
	struct btimer writable;		/* asks lws for POLLOUT from outside its callback */
};

/* Queries waiting for a connection, per lane. */
struct db_fifo
{
	struct db_query *head;
	struct db_query *tail;
	int			count;
};

static struct db_conn *conns;
static int	nconns;
static struct db_fifo waiting[LANE_COUNT];
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

static void dc_connect(struct db_conn *dc);
static void dc_lost(struct db_conn *dc, const char *why);
static void dc_dispatch(struct db_conn *dc);
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

/* Queue a query; it runs when a connection of its lane has room. */
void
db_submit(struct db_query *q)
{
	fifo_push(&waiting[q->lane], q);
	lane_kick(q->lane);
}

/* Queries of a lane waiting or in flight. */
int
db_lane_load(enum db_lane lane)
{
	int			n = waiting[lane].count;

	for (int i = 0; i < nconns; i++)
		if (!conns[i].is_listen && conns[i].lane == lane)
			n += conns[i].depth;
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

static void
lane_kick(enum db_lane lane)
{
	for (int i = 0; i < nconns; i++)
		if (!conns[i].is_listen && conns[i].lane == lane &&
			conns[i].state == DC_READY)
			dc_dispatch(&conns[i]);
}

/* Send waiting queries while the connection has pipeline room. */
static void
dc_dispatch(struct db_conn *dc)
{
	struct db_fifo *f = &waiting[dc->lane];
	bool		sent = false;

	while (dc->state == DC_READY && dc->depth < dc->max_depth && f->head)
	{
		struct db_query *q = f->head;
		const char *values[DB_MAX_PARAMS];

		for (int i = 0; i < q->nparams; i++)
			values[i] = q->params[i];
		if (!PQsendQueryParams(dc->pg, q->sql, q->nparams, NULL, values,
							   q->lengths, q->formats, 0) ||
			!PQpipelineSync(dc->pg))
		{
			dc_lost(dc, PQerrorMessage(dc->pg));
			return;
		}
		fifo_pop(f);
		q->sent_at = now_us();
		if (dc->tail)
			dc->tail->next = q;
		else
			dc->head = q;
		dc->tail = q;
		dc->depth++;
		sent = true;
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

	if (!res)
		res = PQmakeEmptyPGresult(dc->pg, PGRES_FATAL_ERROR);
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
	return !state || !strncmp(state, "57", 2) || !strncmp(state, "08", 2) ||
		!strncmp(state, "53", 2) || !strcmp(state, "40001") ||
		!strcmp(state, "40P01") || !strcmp(state, "25006");
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
		if (!dc->head_result)
			dc->head_result = r;
		else
			PQclear(r);			/* only one result per query is expected */
	}
	if (dc->state == DC_READY)
		dc_dispatch(dc);
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
				dc_dispatch(dc);
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
 * in order, and try again later.
 */
static void
dc_lost(struct db_conn *dc, const char *why)
{
	struct db_fifo *f = &waiting[dc->lane];

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
	if (dc->head)
	{
		dc->tail->next = f->head;
		if (!f->head)
			f->tail = dc->tail;
		f->head = dc->head;
		f->count += dc->depth;
		dc->head = dc->tail = NULL;
		dc->depth = 0;
	}
	if (dc->pg)
		PQfinish(dc->pg);
	dc->pg = NULL;
	dc->state = DC_DOWN;
	dc->want_write = false;
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
	nconns = 1 + (srv.cfg.db_pool < 2 ? 2 : srv.cfg.db_pool);
	conns = calloc(nconns, sizeof(*conns));
	if (!conns)
		return -1;
	for (int i = 0; i < nconns; i++)
	{
		struct db_conn *dc = &conns[i];

		dc->is_listen = (i == 0);
		dc->lane = (i == 1) ? LANE_INGEST : LANE_GENERAL;
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
