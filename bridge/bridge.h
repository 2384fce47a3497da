/*
 * bridge.h - shared declarations of pankha-bridge.
 *
 * The bridge terminates agent and dashboard WebSockets and a small HTTP
 * API on one libwebsockets event loop, and talks to PostgreSQL through
 * non-blocking libpq connections serviced by the same loop.  It keeps no
 * durable state: everything it holds is in flight.
 */
#ifndef PANKHA_BRIDGE_H
#define PANKHA_BRIDGE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <libwebsockets.h>
#include <libpq-fe.h>
#include <cjson/cJSON.h>

#define BRIDGE_VERSION "0.1.0"

/* ---------------------------------------------------------------- config */

/* Everything settable from the command line or the environment. */
struct config
{
	const char *db;				/* libpq connection string */
	const char *listen;			/* HOST:PORT to listen on */
	const char *dashboard;		/* directory served at / (NULL: none) */
	const char *tls_cert;		/* PEM certificate for wss/https */
	const char *tls_key;		/* PEM private key for wss/https */
	const char *bridge_id;		/* name of this bridge in pankha.connections */
	const char *log_file;		/* log destination (NULL: stderr) */
	bool		log_json;		/* one JSON object per log line */
	int			verbose;		/* 0 quiet .. 2 debug */
	int			db_pool;		/* database connections besides LISTEN */
	int			batch_window_ms;	/* how long frames wait to share a batch */
	int			batch_max;		/* most frames in one ingest call */
	int			pipeline_depth;	/* ingest batches in flight at once */
	int			max_held_frames;	/* frames held before reads pause */
	int			agent_held_frames;	/* per agent frames held before its reads pause */
	int			silence_timeout_s;	/* close an agent silent this long */
	size_t		max_message;	/* largest message accepted (bytes) */
	int			rate_per_minute;	/* messages per minute per agent */
	int			connects_per_minute_agent;	/* handshakes per minute per agent id */
	int			connects_per_minute_ip; /* handshakes per minute per address */
	int			max_connections;	/* WebSocket connections at most */
	size_t		max_queued_out; /* bytes queued to one client before it is dropped */
	size_t		max_body;		/* largest HTTP request body (after gunzip) */
	bool		deflate;		/* offer permessage-deflate */
	int			deflate_window; /* window bits asked of clients (9..15) */
	int			deflate_mem_level;	/* zlib memLevel for the deflater (1..9) */
	int			command_visibility_s;	/* claim_commands visibility timeout */
};

/* ---------------------------------------------------------------- output */

/* One queued outgoing WebSocket message, with LWS_PRE bytes of headroom. */
struct outmsg
{
	struct outmsg *next;
	size_t		len;
	lws_usec_t	queued_at;		/* for the command delivery histogram */
	bool		is_command;		/* counts as a pushed command when written */
	unsigned char data[];		/* LWS_PRE headroom, then len bytes */
};

/* A FIFO of outgoing messages for one connection. */
struct outq
{
	struct outmsg *head;
	struct outmsg *tail;
	size_t		bytes;			/* payload bytes queued */
};

int			outq_push(struct outq *q, const char *text, size_t len, bool is_command);
struct outmsg *outq_pop(struct outq *q);
void		outq_clear(struct outq *q);
int			outq_write_one(struct lws *wsi, struct outq *q, uint64_t *frames_out,
						   uint64_t *bytes_out);

/* A growable buffer for building messages and binary query parameters. */
struct sbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;			/* an allocation failed; content is garbage */
};

void		sbuf_append(struct sbuf *b, const char *s, size_t n);
void		sbuf_puts(struct sbuf *b, const char *s);
void		sbuf_printf(struct sbuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		sbuf_text_array_begin(struct sbuf *b);
void		sbuf_text_array_elem(struct sbuf *b, const char *s, size_t n);
void		sbuf_text_array_null(struct sbuf *b);
void		sbuf_text_array_end(struct sbuf *b, size_t count);
void		sbuf_free(struct sbuf *b);

/* JSON parsing for one message at a time, without a malloc per node */
void		json_arena_init(void);
cJSON	   *json_parse_transient(const char *text, size_t len);

/* ---------------------------------------------------------------- metrics */

#define HIST_MAX_BUCKETS 16

/* A Prometheus histogram with fixed upper bounds. */
struct histogram
{
	const char *name;
	const char *help;
	int			nbounds;
	double		bounds[HIST_MAX_BUCKETS];
	uint64_t	counts[HIST_MAX_BUCKETS + 1];
	double		sum;
	uint64_t	count;
};

void		histogram_observe(struct histogram *h, double v);

/* Counters exported at /metrics. */
struct metrics
{
	uint64_t	frames_received;	/* data frames read from agents */
	uint64_t	frames_committed;	/* data frames stored (or already stored) */
	uint64_t	frames_rejected;	/* data frames the extension refused */
	uint64_t	messages_invalid;	/* malformed JSON, unknown type, ... */
	uint64_t	commands_pushed;	/* command messages written to agents */
	uint64_t	commands_acked;		/* command_ack with success */
	uint64_t	commands_failed;	/* command_ack with failure */
	uint64_t	bytes_in;		/* WebSocket payload bytes received */
	uint64_t	bytes_out;		/* WebSocket payload bytes sent */
	uint64_t	db_reconnects;	/* database connections re-established */
	uint64_t	handshakes_refused; /* WebSocket handshakes refused */
	uint64_t	closed_rate_limit;	/* connections closed for abuse */
	uint64_t	closed_too_big; /* connections closed for oversize messages */
	uint64_t	closed_silent;	/* connections closed for silence */
	uint64_t	ui_dropped_slow;	/* dashboards dropped for not reading */
	uint64_t	read_pauses;	/* times reading paused for backpressure */
	uint64_t	credential_loads;	/* complete loads of the credentials */
	uint64_t	credential_refreshes;	/* reloads of notified credentials */
	int64_t		deflate_parked; /* connections whose inflater is parked */
	struct histogram batch_size;	/* frames per ingest call */
	struct histogram commit_seconds;	/* ingest call latency */
	struct histogram command_seconds;	/* NOTIFY to command written */
};

/* ---------------------------------------------------------------- database */

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
	bool		retry_on_error; /* re-run on errors that are not the query's fault */
	bool		result_kept;	/* done() kept the PGresult and will PQclear it */
};

struct db_query *db_query_new(enum db_lane lane, const char *sql, db_done_fn done, void *arg);
int			db_query_param(struct db_query *q, const char *value, size_t len);
int			db_query_param_sbuf(struct db_query *q, struct sbuf *b);
void		db_query_free(struct db_query *q);
void		db_submit(struct db_query *q);
int			db_lane_load(enum db_lane lane);
bool		db_ready(void);
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

extern const struct lws_protocols db_protocol;

/* ---------------------------------------------------------------- credentials */

#define CRED_SELECTOR_LEN 16	/* token characters after the kind prefix */
#define CRED_AGENT 'a'
#define CRED_UI 'u'

/* The answer to a handshake's credentials. */
enum cred_verdict
{
	CRED_OK,					/* accept */
	CRED_REFUSED,				/* HTTP 401; recorded as auth.failed */
	CRED_UNAVAILABLE			/* HTTP 503: database down or credentials not loaded */
};

/* What an accepted token grants, kept by the connection. */
struct cred_grant
{
	char		selector[CRED_SELECTOR_LEN + 1];	/* which token let it in */
	char		owner[65];		/* agent id or dashboard user name */
	char		role[12];		/* dashboard role */
};

enum cred_verdict creds_check(char kind, const char *agent_id, const char *token,
							  const char *peer, struct cred_grant *grant);
bool		creds_ready(void);
size_t		creds_count(void);
bool		creds_still_valid(char kind, const char *selector, const char *owner, const char *role);
/*
 * A credential that let connections in changed or went away (selector
 * NULL: the copy was reloaded whole and any may have).  Subscribers
 * recheck the connections of their kind with creds_still_valid().
 */
typedef void (*creds_changed_fn) (char kind, const char *owner, const char *selector);
int			creds_subscribe(creds_changed_fn fn);
int			creds_init(void);
void		creds_flush_reports(void);
void		creds_shutdown(void);

/* ---------------------------------------------------------------- agents */

/*
 * One agent connection.  It lives on the heap, apart from the lws session,
 * because queries and batched frames refer to it after the socket closed.
 */
struct agent
{
	struct agent *hash_next;	/* chain in the by-id table */
	struct agent *all_next;		/* list of every live connection */
	struct agent *all_prev;
	char	   *agent_id;
	char		selector[CRED_SELECTOR_LEN + 1];	/* of the token it authenticated with */
	char	   *group;			/* its group at connect time, or NULL */
	char		remote[64];		/* peer address */
	struct lws *wsi;			/* NULL once the socket closed */
	int			refs;			/* wsi + queries + frames holding it */
	int64_t		connection_id;	/* pankha.connections id, 0 until known */
	bool		closed;			/* socket closed; record when id known */
	bool		rx_paused;		/* lws_rx_flow_control(0) in force */
	bool		claim_wanted;	/* commands to fetch for it */
	int			close_code;		/* close to send (0: none) */
	char		close_reason[64];
	int			held;			/* frames of it held un-committed */
	int			requeued;		/* of those, frames put back after a failure */
	int64_t		pending_ack;	/* highest seq committed but not acked */
	int64_t		acked;			/* highest seq acked */
	bool		ack_due;		/* frames with seq committed since the last ack */
	uint64_t	ack_mark;		/* batch being acked (marks its last frame) */
	lws_usec_t	last_rx;		/* for the silence timeout */
	double		tokens;			/* rate limit bucket */
	lws_usec_t	tokens_at;		/* last refill */
	int			violations;		/* rate limit breaches this minute */
	unsigned char *rx;			/* the message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	struct outq out;
	uint64_t	frames_in, bytes_in, frames_out, bytes_out;
};

struct agent *agent_find(const char *agent_id);
void		agent_release(struct agent *a);
void		agent_send(struct agent *a, const char *text, size_t len, bool is_command);
void		agent_close(struct agent *a, int code, const char *reason);
void		agent_want_commands(struct agent *a);
int			agents_init(void);
void		agents_flush(void);
void		agents_close_all(int code, const char *reason);
int			agents_count(void);
size_t		ingest_held(void);

int			agent_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
							  void *user, void *in, size_t len);
int			agent_ws_filter(struct lws *wsi, void **session);

/* ---------------------------------------------------------------- ui */

int			ui_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
						   void *user, void *in, size_t len);
int			ui_ws_filter(struct lws *wsi, void **session);
void		ui_broadcast(const char *agent_id, const char *group, const char *text, size_t len);
int			ui_init(void);
struct ui_client;
void		ui_close(struct ui_client *c, int code, const char *reason);
void		ui_close_all(int code, const char *reason);
int			ui_count(void);
bool		ui_any(void);

/* ---------------------------------------------------------------- http */

int			http_callback(struct lws *wsi, enum lws_callback_reasons reason,
						  void *user, void *in, size_t len);
int			http_header_token(struct lws *wsi, char **out);
int			http_refuse(struct lws *wsi, unsigned int status, const char *message);

/* ---------------------------------------------------------------- tls */

void		tls_remember_server_ctx(void *ssl_ctx);
bool		tls_can_reload(void);
int			tls_reload(void);

/* ---------------------------------------------------------------- server */

/* The one process-wide state of the bridge. */
struct server
{
	struct config cfg;			/* options as given */
	struct lws_context *context;	/* the event loop */
	struct lws_vhost *vhost;	/* the listening vhost */
	struct ev_loop *loop;		/* the libev loop lws runs in */
	struct metrics m;			/* what /metrics reports */
	char		bridge_id[128]; /* cfg.bridge_id or host:pid */
	bool		draining;		/* shutting down: no new connections */
	lws_usec_t	started;		/* for uptime */
	struct lws_protocols *ws_protocols;	/* the ws protocol entries */
};

extern struct server srv;

/* A connection-attempt limiter keyed by string, reset each minute. */
bool		attempts_allow(const char *kind, const char *key, int per_minute);
void		attempts_reset(void);

/* Logging: one line per event. */
void		blog(const char *level, const char *event, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

lws_usec_t	now_us(void);
/* A timer: an lws_sul (callbacks get &sul) and its wake-up entry. */
struct btimer
{
	lws_sorted_usec_list_t sul;
	struct btimer *next;		/* in the list of armed timers */
	lws_usec_t	deadline;		/* monotonic us */
	bool		linked;
};

int			timers_init(void);
void		timers_shutdown(void);
void		timer_schedule(struct btimer *t, sul_cb_t cb, lws_usec_t us);
void		timer_cancel(struct btimer *t);
void		log_reopen(void);
char	   *xstrndup(const char *s, size_t n);
bool		agent_id_valid(const char *s);
int			ws_session_kind_agent(void *user);

/* What a WebSocket session is: the pss of the shared protocol. */
struct ws_session
{
	int			kind;			/* WS_AGENT or WS_UI */
	void	   *obj;			/* struct agent * or struct ui_client * */
	int			window;			/* permessage-deflate window bits (0: none) */
	bool		context;		/* the client keeps its context between messages */
	bool		in_message;		/* receiving a compressed message */
	bool		discarding;		/* past --max-message: the rest of the stream is dropped */
	bool		parked;			/* no inflater, its window in dict */
	size_t		inflated;		/* bytes inflated of the current message */
	struct z_stream_s *inflater;	/* the inflater while in use, or NULL */
	unsigned int dict_len;		/* bytes of window in dict */
	unsigned char *dict;		/* the parked window (2^window bytes), or NULL */
};

/* permessage-deflate (deflate.c) */
void		deflate_answer(struct lws *wsi, struct ws_session *s,
						   struct lws_process_html_args *args);
void		deflate_established(struct lws *wsi, struct ws_session *s);
void		deflate_session_end(struct ws_session *s);
int			deflate_extension(struct lws_context *context, const struct lws_extension *ext,
							  struct lws *wsi, enum lws_extension_callback_reasons reason,
							  void *user, void *in, size_t len);

#define WS_NONE 0
#define WS_AGENT 1
#define WS_UI 2

#endif							/* PANKHA_BRIDGE_H */
