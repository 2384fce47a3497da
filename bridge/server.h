/*
 * server.h - the bridge's one process-wide state: its options (set in
 * main.c), its counters (read by /metrics) and its name.
 */
#ifndef PANKHA_SERVER_H
#define PANKHA_SERVER_H

#include "util.h"

#include "version.h"			/* BRIDGE_VERSION, from pankha.control */

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
	int			db_pool;		/* general database connections */
	int			ingest_connections; /* ingest database connections (shards) */
	int			batch_window_ms;	/* how long frames wait to share a batch */
	int			batch_max;		/* most frames in one ingest call */
	int			pipeline_depth;	/* ingest batches in flight at once per connection */
	int			max_held_frames;	/* frames held before reads pause */
	int			agent_held_frames;	/* per agent frames held before its reads pause */
	int			silence_timeout_s;	/* close an agent silent this long */
	size_t		max_message;	/* largest message accepted (bytes) */
	int			rate_per_minute;	/* messages per minute per agent */
	int			connects_per_minute_agent;	/* handshakes per minute per agent id */
	int			connects_per_minute_ip; /* handshakes per minute per address */
	int			max_connections;	/* agent WebSocket connections at most */
	int			ui_max_connections; /* /ws/ui connections at most (their own budget) */
	int			ui_max_per_token;	/* /ws/ui connections per token (0: unlimited) */
	int			ui_max_per_ip;	/* /ws/ui connections per address (0: unlimited) */
	int			ui_idle_timeout_s;	/* close a dashboard silent this long (0: never) */
	int			ui_rate_per_s;	/* dashboard messages per second per connection (0: unlimited) */
	int			ui_rate_burst;	/* and how many at once above it */
	size_t		max_queued_out; /* bytes queued to one client before it is dropped */
	size_t		max_body;		/* largest HTTP request body (after gunzip) */
	bool		deflate;		/* offer permessage-deflate */
	int			deflate_window; /* window bits asked of clients (9..15) */
	int			deflate_mem_level;	/* zlib memLevel for the deflater (1..9) */
	int			command_visibility_s;	/* claim_commands visibility timeout */
	const char *cors_origins;	/* comma-separated origins allowed by CORS (NULL: none) */
	int			http_rate_token;	/* API requests per minute per token */
	int			http_rate_ip;	/* API requests per minute per address */
	int			request_timeout_s;	/* a request or handshake as a whole (0: none) */
	int			max_connections_ip; /* accepted connections per address (0: unlimited) */
	int			auth_fail_limit_ip; /* refused credentials per minute per address */
	const char *trusted_proxies;	/* --trusted-proxy list (NULL: none) */
	bool		proxy_protocol; /* --proxy-protocol: trusted proxies send PROXY headers */
	int			proxy_protocol_timeout_ms;	/* for a whole PROXY header */
	const char *metrics_token;	/* bearer token /metrics requires (NULL: none) */
	size_t		max_held_bytes; /* bytes of frames held before all reading pauses */
	size_t		agent_held_bytes;	/* bytes of one agent's frames held before it is refused */
	int			heartbeat_interval_s;	/* seconds between beats in pankha.bridges (0: none) */
};

struct metrics
{
	uint64_t	frames_received;	/* data frames read from agents */
	uint64_t	frames_refused;	/* data frames dropped for a limit (connection closed) */
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
	uint64_t	agent_frames_dropped;	/* frames agents' status reports say they dropped */
	uint64_t	ingest_retries;	/* batches sent again after a failure not their frames' */
	uint64_t	read_pauses;	/* times reading paused for backpressure */
	uint64_t	credential_loads;	/* complete loads of the credentials */
	uint64_t	credential_refreshes;	/* reloads of notified credentials */
	int64_t		deflate_parked; /* connections whose inflater is parked */
	uint64_t	http_rate_limited;	/* HTTP requests answered 429 */
	uint64_t	heartbeats;		/* beats the database recorded */
	uint64_t	heartbeat_expired;	/* times this run found itself declared dead */
	uint64_t	live_received;	/* frames of other bridges' agents heard on pankha_live */
	uint64_t	live_watch_calls;	/* topics recorded with pankha.live_watch */
	uint64_t	audit_received; /* audit rows heard on pankha_audit */
	uint64_t	ui_refused_caps;	/* /ws/ui handshakes refused for a connection cap */
	uint64_t	ui_closed_idle; /* dashboards closed for idleness */
	uint64_t	ui_rate_limited;	/* dashboard messages dropped over --ui-rate-limit */
	uint64_t	ui_closed_rate_limit;	/* dashboards closed for flooding */
	uint64_t	connections_refused_total;	/* accepted sockets closed: too many in all */
	uint64_t	connections_refused_ip; /* accepted sockets closed: too many from the address */
	uint64_t	request_timeouts;	/* connections closed at their request deadline */
	uint64_t	proxy_headers;	/* PROXY headers read (proxy_listen.c) */
	uint64_t	proxy_refused[4];	/* trusted connections closed, by PROXY_R_* */
	uint64_t	auth_fail_limited;	/* requests and handshakes 429 for refused credentials */
	uint64_t	closed_held_bytes;	/* agents closed for holding too many bytes of frames */
	struct histogram batch_size;	/* frames per ingest call */
	struct histogram commit_seconds;	/* ingest call latency */
	struct histogram command_seconds;	/* NOTIFY to command written */
};

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
	int			exit_status;	/* main's: non-zero after a refusal to run */
};

extern struct server srv;

/* Drain and stop, as on SIGTERM, then exit with status (main.c). */
void		server_stop(int status);

#endif							/* PANKHA_SERVER_H */
