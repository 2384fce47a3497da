/*
 * link.c - the agent's side of the wire protocol (DESIGN.md), on a
 * libwebsockets client context, and the agent's timers.
 *
 * WebSocket: GET /ws/agent?agent_id=ID with "Authorization: Bearer TOKEN".
 * Every data frame is kept in the resend buffer until an ack covers its
 * seq; after a reconnect the link starts again from the oldest unacked
 * frame, so the server sees every frame in order.  Pings go out every
 * ping interval; a server silent for two intervals is dropped.  Reconnects
 * wait a random time in [min, min(max, min * 2^attempt)] ("full jitter"),
 * so a fleet that lost its bridge does not come back in lock-step.
 *
 * Pacing: the bridge announces its per-agent message rate in "connected"
 * (rate_per_minute) and drops what goes over it; a dropped frame could then
 * be covered by the ack of a later one.  So the link keeps its own token
 * bucket at 80 % of that rate and lets a backlog drain no faster; data
 * waits (up to a second) for "connected" before the first write.
 *
 * HTTP fallback: after several failed handshakes in a row the link tries
 * POST /api/v1/agents/sync.  When that works it keeps syncing every update
 * interval (frames, command acks out; commands, config in) while still
 * trying the WebSocket with backoff, and stops syncing once a WebSocket is
 * up again.
 *
 * Enrollment: POST /api/v1/agents/register with the enrollment key, store
 * the token in a file only root can read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "agent.h"

/* Largest message we accept from the server. */
#define RX_MAX (1024 * 1024)
/* Largest HTTP response body we accept. */
#define HTTP_RESP_MAX (4 * 1024 * 1024)
/* Frames per sync request. */
#define SYNC_BATCH 100
/*
 * Bytes of frames per sync request, well under the bridge's default
 * --max-body (1 MiB); a 413 halves it until the server takes the batch.
 */
#define SYNC_MAX_BYTES (512 * 1024)

/* A message waiting to be written on the WebSocket (or synced). */
struct out_msg
{
	struct out_msg *next;
	char	   *text;			/* the whole message, or for acks the data object */
	size_t		len;
	bool		is_ack;			/* command_ack: survives disconnects */
	bool		in_sync;		/* part of the sync request in flight */
};

/* One HTTP request (sync or register) and its response. */
struct http_req
{
	struct pk_link *link;
	struct lws *wsi;			/* the connection serving it */
	char	   *path;			/* request path */
	char	   *auth;			/* "Bearer ..." */
	char	   *body;			/* request body */
	size_t		body_len;
	char	   *resp;			/* response body so far */
	size_t		resp_len;
	int			status;			/* HTTP status, 0 before headers */
	bool		in_flight;		/* started, not finished */
	int64_t		last_seq;		/* sync: highest seq in the request */
	int64_t		seqs[SYNC_BATCH];	/* sync: seq of each frame sent, in order */
	int			nseqs;
	void		(*done) (struct http_req *r, bool ok);
};

struct pk_link
{
	struct pk_agent *a;
	struct lws_context *ctx;
	char	   *url_copy;		/* server_url, cut up by lws_parse_uri */
	const char *host;			/* server host */
	int			port;			/* server port */
	bool		tls;			/* wss/https */
	char	   *ws_path;		/* /ws/agent?agent_id=... */
	char	   *http_base;		/* base path for /api/... */
	char	   *auth;			/* "Bearer TOKEN" */
	struct lws *ws;				/* WebSocket connection, connecting or up */
	bool		ws_up;			/* handshake done */
	int			attempt;		/* failed connects in a row (backoff) */
	int			hs_failures;	/* failed handshakes in a row (fallback) */
	bool		http_mode;		/* syncing over HTTP */
	int64_t		last_rx_ms;		/* monotonic: last message from the server */
	int64_t		last_contact_ms;	/* monotonic: last sign the server is there */
	int64_t		sent_upto;		/* highest seq written on this connection */
	int64_t		next_tick_ms;	/* monotonic: when the next data frame is due */
	struct out_msg *q_head;		/* messages to write, oldest first */
	struct out_msg *q_tail;
	char	   *rx;				/* message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	unsigned char *tx;			/* LWS_PRE + message scratch */
	size_t		tx_cap;
	struct http_req sync;		/* the sync request */
	struct http_req reg;		/* the enrollment request */
	size_t		sync_max_bytes; /* frame bytes per sync request now */
	bool		stopping;		/* leave the loop */
	int			exit_code;		/* of pk_link_run */
	uint64_t	bytes_out;		/* payload bytes written (WS + HTTP bodies) */
	uint64_t	bytes_in;		/* payload bytes read */
	double		rate_per_min;	/* our message budget, 0 = unlimited */
	double		tokens;			/* messages we may send now */
	int64_t		tokens_ms;		/* monotonic time tokens was computed */
	bool		greeted;		/* "connected" seen on this connection */
	size_t		max_message;	/* largest message the server takes, 0 = unknown */
	int64_t		hold_until_ms;	/* wait for "connected" until then */
	lws_sorted_usec_list_t sul_tick;	/* data frames */
	lws_sorted_usec_list_t sul_ping;	/* keep-alive */
	lws_sorted_usec_list_t sul_connect; /* reconnect after backoff */
	lws_sorted_usec_list_t sul_sync;	/* HTTP fallback cadence */
	lws_sorted_usec_list_t sul_sim; /* in-process simulator */
	lws_sorted_usec_list_t sul_status;	/* status messages */
	lws_sorted_usec_list_t sul_pace;	/* resume writing after pacing */
};

static volatile sig_atomic_t stop_signal;
static struct lws_context *signal_ctx;

static int	ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
						void *in, size_t len);
static int	http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
						  void *in, size_t len);
static void connect_ws(lws_sorted_usec_list_t *sul);
static void schedule_reconnect(struct pk_link *l, const char *why);
static void on_tick(lws_sorted_usec_list_t *sul);
static void on_ping(lws_sorted_usec_list_t *sul);
static void on_sync_timer(lws_sorted_usec_list_t *sul);
static void on_sim(lws_sorted_usec_list_t *sul);
static void on_status(lws_sorted_usec_list_t *sul);
static void start_sync(struct pk_link *l);
static void sync_done(struct http_req *r, bool ok);
static void register_done(struct http_req *r, bool ok);
static int	http_start(struct pk_link *l, struct http_req *r);
static void handle_message(struct pk_link *l, const char *text, size_t len);
static void handle_command(struct pk_link *l, const cJSON *data);
static void apply_config(struct pk_link *l, const cJSON *data);
static int	queue_msg(struct pk_link *l, char *text, bool is_ack);
static void queue_ack(struct pk_link *l, cJSON *ack);
static void drop_volatile(struct pk_link *l);
static void request_write(struct pk_link *l);
static char *url_encode(const char *s);
static int64_t usec(double seconds);

static const struct lws_protocols protocols[] = {
	{"pankha-agent", ws_callback, 0, 0, 0, NULL, 0},
	{"pankha-http", http_callback, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * permessage-deflate (RFC 7692), offered when --deflate is on.  The agent
 * keeps its compression context between messages and lets the server pick
 * the window (client_max_window_bits): consecutive frames differ in a few
 * digits, so with the previous frame in the window each compresses to a
 * small fraction of what it does alone, for a few KB of deflater state.
 */
static const struct lws_extension extensions[] = {
	{"permessage-deflate", lws_extension_callback_pm_deflate,
	"permessage-deflate; client_max_window_bits"},
	{NULL, NULL, NULL}
};

static int64_t
usec(double seconds)
{
	return (int64_t) (seconds * LWS_US_PER_SEC);
}

/*
 * Full-jitter backoff: uniform in [min, min(max, min * 2^attempt)].
 * unit_random is in [0, 1).
 */
double
pk_backoff_delay(int attempt, double min_s, double max_s, double unit_random)
{
	double		cap = min_s;

	for (int i = 0; i < attempt && cap < max_s; i++)
		cap *= 2;
	if (cap > max_s)
		cap = max_s;
	if (cap < min_s)
		cap = min_s;
	return min_s + (cap - min_s) * unit_random;
}

/*
 * Token bucket like the bridge's: holds at most one minute of rate, refills
 * continuously.  Takes a token and returns 0, or returns the milliseconds
 * until one is available.
 */
int64_t
pk_pace(double *tokens, int64_t *stamp_ms, double rate_per_min, int64_t now_ms)
{
	if (rate_per_min <= 0)
		return 0;
	if (now_ms > *stamp_ms)
		*tokens += (double) (now_ms - *stamp_ms) * rate_per_min / 60000.0;
	*stamp_ms = now_ms;
	if (*tokens > rate_per_min)
		*tokens = rate_per_min;
	if (*tokens >= 1)
	{
		*tokens -= 1;
		return 0;
	}
	return (int64_t) ((1 - *tokens) * 60000.0 / rate_per_min) + 1;
}

static void
on_pace(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_pace);

	request_write(l);
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static char *
url_encode(const char *s)
{
	size_t		n = strlen(s);
	char	   *out = malloc(n * 3 + 1),
			   *o = out;

	if (!out)
		return NULL;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~')
			*o++ = (char) c;
		else
			o += sprintf(o, "%%%02X", c);
	}
	*o = '\0';
	return out;
}

/* Split a ws://, wss://, http:// or https:// URL; 0 on success. */
static int
parse_url(const char *url, char **copy, const char **host, int *port, bool *tls, char **base)
{
	const char *prot,
			   *path;
	size_t		bl;

	*copy = strdup(url);
	if (!*copy)
		return -1;
	if (lws_parse_uri(*copy, &prot, host, port, &path) != 0 || !**host)
		return -1;
	if (strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0)
		*tls = true;
	else if (strcmp(prot, "ws") == 0 || strcmp(prot, "http") == 0)
		*tls = false;
	else
		return -1;
	if (!strchr(url + strlen(prot) + 3, ':'))
		*port = *tls ? 443 : 80;
	/* lws_parse_uri drops the leading '/' of the path. */
	bl = strlen(path);
	while (bl > 0 && path[bl - 1] == '/')
		bl--;
	*base = malloc(bl + 2);
	if (!*base)
		return -1;
	snprintf(*base, bl + 2, "%s%.*s", bl ? "/" : "", (int) bl, path);
	return 0;
}

static void
on_signal(int sig)
{
	stop_signal = sig;
	if (signal_ctx)
		lws_cancel_service(signal_ctx);
}

/* Create the lws context and the link state; 0 on success. */
int
pk_link_create(struct pk_agent *a)
{
	struct lws_context_creation_info info;
	struct pk_link *l = calloc(1, sizeof(*l));
	const char *url = a->enroll_url ? a->enroll_url : a->server_url;
	char	   *base = NULL;
	bool		need_tls;

	if (!l)
		return -1;
	a->link = l;
	l->a = a;
	l->sync.link = l->reg.link = l;
	if (!url || parse_url(url, &l->url_copy, &l->host, &l->port, &l->tls, &base) != 0)
	{
		pk_log(PK_LOG_ERROR, "invalid server URL \"%s\" (expected ws://HOST:PORT or wss://...)",
			   url ? url : "");
		free(base);
		return -1;
	}
	l->http_base = base;
	if (!a->enroll_url)
	{
		char	   *id = url_encode(a->agent_id);
		size_t		n = strlen(base) + (id ? strlen(id) : 0) + 32;
		bool		has_ws = strlen(base) >= 9 && strcmp(base + strlen(base) - 9, "/ws/agent") == 0;

		l->ws_path = id ? malloc(n) : NULL;
		if (l->ws_path)
			snprintf(l->ws_path, n, "%s%s?agent_id=%s", base, has_ws ? "" : "/ws/agent", id);
		if (has_ws)
			base[strlen(base) - 9] = '\0';
		free(id);
		if (!l->ws_path)
			return -1;
	}
	need_tls = l->tls;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.user = a;
	info.fd_limit_per_thread = 16;
	if (a->deflate)
		info.extensions = extensions;
	if (need_tls)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = a->ca_file;
	}
	lws_set_log_level(pk_log_level >= PK_LOG_DEBUG ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR, NULL);
	l->ctx = lws_create_context(&info);
	if (!l->ctx)
	{
		pk_log(PK_LOG_ERROR, "cannot create the libwebsockets context");
		return -1;
	}
	signal_ctx = l->ctx;
	return 0;
}

/* Ask lws for a writable callback on the WebSocket when there is output. */
static void
request_write(struct pk_link *l)
{
	if (l->ws && l->ws_up)
		lws_callback_on_writable(l->ws);
}

/* Append a message to the write queue (takes text); 0 on success. */
static int
queue_msg(struct pk_link *l, char *text, bool is_ack)
{
	struct out_msg *m;

	if (!text)
		return -1;
	m = calloc(1, sizeof(*m));
	if (!m)
	{
		free(text);
		return -1;
	}
	m->text = text;
	m->len = strlen(text);
	m->is_ack = is_ack;
	if (l->q_tail)
		l->q_tail->next = m;
	else
		l->q_head = m;
	l->q_tail = m;
	request_write(l);
	return 0;
}

/* Queue a command_ack's data object (consumes ack). */
static void
queue_ack(struct pk_link *l, cJSON *ack)
{
	char	   *text;

	if (!ack)
		return;
	text = cJSON_PrintUnformatted(ack);
	cJSON_Delete(ack);
	if (queue_msg(l, text, true) != 0)
		pk_log(PK_LOG_ERROR, "out of memory: a command_ack is lost (the server will redeliver)");
}

/* Forget pings and status messages of a connection that ended. */
static void
drop_volatile(struct pk_link *l)
{
	struct out_msg **pp = &l->q_head;

	l->q_tail = NULL;
	while (*pp)
	{
		struct out_msg *m = *pp;

		if (!m->is_ack)
		{
			*pp = m->next;
			free(m->text);
			free(m);
			continue;
		}
		l->q_tail = m;
		pp = &m->next;
	}
}

/* Remove one message from the queue. */
static void
unlink_msg(struct pk_link *l, struct out_msg *m)
{
	struct out_msg **pp = &l->q_head;

	l->q_tail = NULL;
	while (*pp)
	{
		if (*pp == m)
		{
			*pp = m->next;
			continue;
		}
		l->q_tail = *pp;
		pp = &(*pp)->next;
	}
	free(m->text);
	free(m);
}

/* Start (or retry) the WebSocket connection. */
static void
connect_ws(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_connect);
	struct lws_client_connect_info i;

	if (l->stopping || l->ws)
		return;
	memset(&i, 0, sizeof(i));
	i.context = l->ctx;
	i.address = l->host;
	i.port = l->port;
	i.path = l->ws_path;
	i.host = l->host;
	i.origin = l->host;
	i.protocol = NULL;
	i.local_protocol_name = "pankha-agent";
	i.pwsi = &l->ws;
	if (l->tls)
	{
		i.ssl_connection = LCCSCF_USE_SSL;
		if (l->a->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
				LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
	}
	pk_log(PK_LOG_DEBUG, "connecting to %s:%d%s", l->host, l->port, l->ws_path);
	if (!lws_client_connect_via_info(&i))
	{
		l->ws = NULL;
		schedule_reconnect(l, "cannot start a connection");
	}
}

/* Count a failure and schedule the next attempt after the backoff. */
static void
schedule_reconnect(struct pk_link *l, const char *why)
{
	double		delay;

	if (l->stopping)
		return;
	delay = pk_backoff_delay(l->attempt, l->a->reconnect_min, l->a->reconnect_max,
							 (double) (random() % 1000000) / 1000000.0);
	l->attempt++;
	pk_log(l->attempt <= 1 ? PK_LOG_WARN : PK_LOG_INFO,
		   "connection to %s:%d: %s; retrying in %.1f s", l->host, l->port, why, delay);
	lws_sul_schedule(l->ctx, 0, &l->sul_connect, connect_ws, usec(delay));
}

/* The WebSocket ended or never started: clean up and plan what is next. */
static void
ws_gone(struct pk_link *l, bool handshake_failed, const char *why)
{
	bool		was_up = l->ws_up;

	if (l->stopping)
	{
		l->ws = NULL;
		l->ws_up = false;
		return;
	}
	l->ws = NULL;
	l->ws_up = false;
	l->rx_len = 0;
	drop_volatile(l);
	lws_sul_schedule(l->ctx, 0, &l->sul_ping, NULL, LWS_SET_TIMER_USEC_CANCEL);
	lws_sul_schedule(l->ctx, 0, &l->sul_status, NULL, LWS_SET_TIMER_USEC_CANCEL);
	lws_sul_schedule(l->ctx, 0, &l->sul_pace, NULL, LWS_SET_TIMER_USEC_CANCEL);
	if (was_up)
	{
		l->last_contact_ms = pk_mono_ms();
		pk_log(PK_LOG_WARN, "disconnected from the server (%s); %zu frame(s) wait for an ack",
			   why, l->a->buf.count);
	}
	if (handshake_failed)
	{
		l->hs_failures++;
		if (l->hs_failures >= l->a->fallback_after && !l->http_mode && !l->sync.in_flight)
			start_sync(l);
	}
	schedule_reconnect(l, why);
}

static void
on_established(struct pk_link *l, struct lws *wsi)
{
	int64_t		now = pk_mono_ms();

	l->ws = wsi;
	l->ws_up = true;
	l->attempt = 0;
	l->hs_failures = 0;
	l->last_rx_ms = l->last_contact_ms = now;
	l->greeted = false;
	l->hold_until_ms = now + 1000;
	l->tokens = l->rate_per_min;
	l->tokens_ms = now;
	/* Everything not acked goes again, oldest first. */
	l->sent_upto = l->a->buf.acked;
	if (l->http_mode)
	{
		pk_log(PK_LOG_INFO, "WebSocket is back: leaving the HTTP fallback");
		l->http_mode = false;
		lws_sul_schedule(l->ctx, 0, &l->sul_sync, NULL, LWS_SET_TIMER_USEC_CANCEL);
	}
	pk_log(PK_LOG_INFO, "connected to %s:%d as %s; re-sending %zu unacknowledged frame(s)",
		   l->host, l->port, l->a->agent_id, l->a->buf.count);
	lws_sul_schedule(l->ctx, 0, &l->sul_ping, on_ping, usec(l->a->ping_interval));
	lws_sul_schedule(l->ctx, 0, &l->sul_status, on_status, 0);
	request_write(l);
}

/* Write one message: queued messages first, then buffered frames. */
static int
write_next(struct pk_link *l, struct lws *wsi)
{
	struct out_msg *m;
	const struct pk_frame *f = NULL;
	size_t		need;
	int			n;
	int64_t		now = pk_mono_ms(),
				wait;

	for (m = l->q_head; m && m->in_sync; m = m->next)
		;
	if (!m)
		f = pk_buffer_after(&l->a->buf, l->sent_upto);
	if (!m && !f)
		return 0;
	if (!l->greeted && now < l->hold_until_ms)
		wait = l->hold_until_ms - now;
	else
		wait = pk_pace(&l->tokens, &l->tokens_ms, l->rate_per_min, now);
	if (wait > 0)
	{
		lws_sul_schedule(l->ctx, 0, &l->sul_pace, on_pace, wait * 1000);
		return 0;
	}
	need = LWS_PRE + (m ? m->len : f->len) + 64;
	if (need > l->tx_cap)
	{
		unsigned char *nb = realloc(l->tx, need);

		if (!nb)
		{
			pk_log(PK_LOG_ERROR, "out of memory writing to the server");
			lws_callback_on_writable(wsi);
			return 0;
		}
		l->tx = nb;
		l->tx_cap = need;
	}
	if (!m && l->max_message && f->len + 32 > l->max_message)
	{
		/* The server would close the connection over it, again and again. */
		pk_log(PK_LOG_ERROR, "frame seq %" PRId64 " has %zu bytes, more than the server takes (%zu): "
			   "dropped", f->seq, f->len, l->max_message);
		l->a->buf.dropped++;
		l->sent_upto = f->seq;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (m && m->is_ack)
		n = snprintf((char *) l->tx + LWS_PRE, need - LWS_PRE,
					 "{\"type\":\"command_ack\",\"data\":%s}", m->text);
	else if (m)
		n = snprintf((char *) l->tx + LWS_PRE, need - LWS_PRE, "%s", m->text);
	else
		n = snprintf((char *) l->tx + LWS_PRE, need - LWS_PRE, "{\"type\":\"data\",\"data\":%s}", f->json);
	if (lws_write(wsi, l->tx + LWS_PRE, (size_t) n, LWS_WRITE_TEXT) < n)
		return -1;
	l->bytes_out += (uint64_t) n;
	if (m)
		unlink_msg(l, m);
	else
		l->sent_upto = f->seq;
	/* More to go? */
	for (m = l->q_head; m && m->in_sync; m = m->next)
		;
	if (m || pk_buffer_after(&l->a->buf, l->sent_upto))
		lws_callback_on_writable(wsi);
	return 0;
}

static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct pk_agent *a = lws_context_user(lws_get_context(wsi));
	struct pk_link *l = a ? a->link : NULL;

	if (!l)
		return 0;
	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			{
				unsigned char **p = (unsigned char **) in,
						   *end = (*p) + len;

				if (lws_add_http_header_by_name(wsi, (const unsigned char *) "authorization:",
												(const unsigned char *) l->auth,
												(int) strlen(l->auth), p, end))
					return -1;
				break;
			}
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			on_established(l, wsi);
			break;
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			if (wsi == l->ws || !l->ws)
				ws_gone(l, true, in && len ? (const char *) in : "connection failed");
			break;
		case LWS_CALLBACK_CLIENT_RECEIVE:
			{
				if (lws_is_first_fragment(wsi))
					l->rx_len = 0;
				if (l->rx_len + len + 1 > RX_MAX)
				{
					pk_log(PK_LOG_ERROR, "message from the server over %d bytes: closing", RX_MAX);
					lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
									 (unsigned char *) "too large", 9);
					return -1;
				}
				if (l->rx_len + len + 1 > l->rx_cap)
				{
					size_t		ncap = l->rx_len + len + 1 + 1024;
					char	   *nb = realloc(l->rx, ncap);

					if (!nb)
					{
						pk_log(PK_LOG_ERROR, "out of memory receiving a message: closing");
						return -1;
					}
					l->rx = nb;
					l->rx_cap = ncap;
				}
				memcpy(l->rx + l->rx_len, in, len);
				l->rx_len += len;
				l->bytes_in += len;
				if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
				{
					l->rx[l->rx_len] = '\0';
					l->last_rx_ms = l->last_contact_ms = pk_mono_ms();
					handle_message(l, l->rx, l->rx_len);
					l->rx_len = 0;
				}
				break;
			}
		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (wsi != l->ws)
				break;
			return write_next(l, wsi);
		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			if (len >= 2)
			{
				unsigned char *b = in;
				int			code = (b[0] << 8) | b[1];

				pk_log(code == 4000 ? PK_LOG_WARN : PK_LOG_INFO, "server closed the connection: %d %.*s%s",
					   code, (int) (len - 2), (char *) b + 2,
					   code == 4000 ? " (another connection uses this agent id)" : "");
				if (code == 4000)
					l->attempt = 30;	/* back off fully rather than fight over the id */
			}
			break;
		case LWS_CALLBACK_CLIENT_CLOSED:
			if (wsi == l->ws)
				ws_gone(l, false, "connection closed");
			break;
		default:
			break;
	}
	(void) user;
	return 0;
}

/* Apply a config_update data object (and ack it if it carries a command_id). */
static void
apply_config(struct pk_link *l, const cJSON *data)
{
	struct pk_agent *a = l->a;
	char		err[256];
	double		old = a->settings.update_interval;
	int			rc = pk_settings_apply(a, data, err, sizeof(err));
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(data, "command_id");

	if (rc != 0)
		pk_log(PK_LOG_WARN, "config_update rejected: %s", err);
	if (a->settings.update_interval != old)
	{
		int64_t		now = pk_mono_ms();
		int64_t		due = now + (int64_t) (a->settings.update_interval * 1000);

		/*
		 * The buffer's bounds do not follow the interval: shrinking them
		 * here dropped frames still waiting for their ack (review L3).
		 */
		if (due < l->next_tick_ms)
		{
			l->next_tick_ms = due;
			lws_sul_schedule(l->ctx, 0, &l->sul_tick, on_tick, (due - now) * 1000);
		}
	}
	if (cid && !cJSON_IsNull(cid))
	{
		cJSON	   *ack = cJSON_CreateObject();
		char		ts[40];
		time_t		now = time(NULL);
		struct tm	tm;

		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (ack && cJSON_AddItemToObject(ack, "command_id", cJSON_Duplicate(cid, 1)) &&
			cJSON_AddBoolToObject(ack, "success", rc == 0) &&
			(rc == 0 ? cJSON_AddNullToObject(ack, "error") != NULL :
			 cJSON_AddStringToObject(ack, "error", err) != NULL) &&
			cJSON_AddStringToObject(ack, "timestamp", ts))
			queue_ack(l, ack);
		else
			cJSON_Delete(ack);
	}
}

static void
handle_command(struct pk_link *l, const cJSON *data)
{
	queue_ack(l, pk_command_handle(l->a, data));
}

/* One message from the server. */
static void
handle_message(struct pk_link *l, const char *text, size_t len)
{
	cJSON	   *msg = cJSON_ParseWithLength(text, len);
	const cJSON *type,
			   *data;

	if (!msg || !cJSON_IsObject(msg))
	{
		pk_log(PK_LOG_WARN, "ignoring a message from the server that is not a JSON object");
		cJSON_Delete(msg);
		return;
	}
	type = cJSON_GetObjectItemCaseSensitive(msg, "type");
	data = cJSON_GetObjectItemCaseSensitive(msg, "data");
	if (!cJSON_IsString(type))
		pk_log(PK_LOG_WARN, "ignoring a message from the server without a type");
	else if (strcmp(type->valuestring, "ack") == 0)
	{
		const cJSON *seq = cJSON_GetObjectItemCaseSensitive(data, "seq");

		if (cJSON_IsNumber(seq))
		{
			size_t		n = pk_buffer_ack(&l->a->buf, (int64_t) seq->valuedouble);

			pk_log(PK_LOG_DEBUG, "ack %.0f: %zu frame(s) done, %zu waiting", seq->valuedouble,
				   n, l->a->buf.count);
		}
	}
	else if (strcmp(type->valuestring, "command") == 0)
	{
		if (cJSON_IsObject(data))
			handle_command(l, data);
		else
			pk_log(PK_LOG_WARN, "ignoring a command without a data object");
	}
	else if (strcmp(type->valuestring, "config_update") == 0)
	{
		if (cJSON_IsObject(data))
			apply_config(l, data);
	}
	else if (strcmp(type->valuestring, "connected") == 0)
	{
		const cJSON *rate = cJSON_GetObjectItemCaseSensitive(data, "rate_per_minute");
		const cJSON *maxm = cJSON_GetObjectItemCaseSensitive(data, "max_message");

		if (cJSON_IsNumber(maxm) && maxm->valuedouble >= 1024)
			l->max_message = (size_t) maxm->valuedouble;

		if (cJSON_IsNumber(rate) && rate->valuedouble > 0)
		{
			l->rate_per_min = 0.8 * rate->valuedouble;
			if (l->rate_per_min < 1)
				l->rate_per_min = 1;
			l->tokens = l->rate_per_min;
			l->tokens_ms = pk_mono_ms();
		}
		else if (cJSON_IsNumber(rate))
			l->rate_per_min = 0;	/* the server sets no limit */
		pk_log(PK_LOG_DEBUG, "server says connected (message budget %g/min)", l->rate_per_min);
		l->greeted = true;
		request_write(l);
	}
	else if (strcmp(type->valuestring, "pong") == 0)
		;
	else if (strcmp(type->valuestring, "error") == 0)
	{
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(data, "code");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(data, "message");
		const cJSON *seq = cJSON_GetObjectItemCaseSensitive(data, "seq");

		pk_log(PK_LOG_WARN, "server error %s: %s%s%.0f%s", cJSON_IsString(code) ? code->valuestring : "?",
			   cJSON_IsString(m) ? m->valuestring : "", cJSON_IsNumber(seq) ? " (frame seq " : "",
			   cJSON_IsNumber(seq) ? seq->valuedouble : 0, cJSON_IsNumber(seq) ? ")" : "");
		if (cJSON_IsString(code) && strcmp(code->valuestring, "rate_limited") == 0)
		{
			/* Slow down, and send what was dropped again. */
			l->rate_per_min = l->rate_per_min > 0 ? l->rate_per_min / 2 : 60;
			if (l->rate_per_min < 6)
				l->rate_per_min = 6;
			l->tokens = 0;
			l->tokens_ms = pk_mono_ms();
			l->sent_upto = l->a->buf.acked;
			pk_log(PK_LOG_WARN, "slowing down to %g messages a minute", l->rate_per_min);
		}
	}
	else
		pk_log(PK_LOG_DEBUG, "ignoring a message of type \"%.32s\"", type->valuestring);
	cJSON_Delete(msg);
}

/* Keep-alive; also drops a connection whose server went silent. */
static void
on_ping(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_ping);

	if (!l->ws_up)
		return;
	if (pk_mono_ms() - l->last_rx_ms > (int64_t) (2 * l->a->ping_interval * 1000))
	{
		pk_log(PK_LOG_WARN, "no word from the server for %.0f s: reconnecting", 2 * l->a->ping_interval);
		lws_set_timeout(l->ws, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	queue_msg(l, strdup("{\"type\":\"ping\"}"), false);
	lws_sul_schedule(l->ctx, 0, &l->sul_ping, on_ping, usec(l->a->ping_interval));
}

/* {"type":"status",...}: uptime, memory and buffer figures. */
static void
on_status(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_status);
	struct pk_agent *a = l->a;
	char	   *text = NULL;
	long		rss = pk_self_rss_kb("/proc");
	int			n;

	if (!l->ws_up)
		return;
	n = asprintf(&text, "{\"type\":\"status\",\"data\":{\"uptime_seconds\":%" PRId64
				 ",\"memory_usage_mb\":%.1f,\"agent_version\":\"%s\",\"buffered_frames\":%zu,"
				 "\"dropped_frames\":%" PRIu64 ",\"fan_overrides\":%lu,\"emergency\":%s,"
				 "\"failsafe\":%s,\"sensors_omitted\":%d,\"fans_omitted\":%d}}",
				 (pk_mono_ms() - a->started_ms) / 1000, rss > 0 ? rss / 1024.0 : 0,
				 PK_AGENT_VERSION, a->buf.count, a->buf.dropped, a->reasserts,
				 a->emergency || a->emergency_stop ? "true" : "false", a->failsafe ? "true" : "false",
				 a->sensors_omitted, a->fans_omitted);
	if (n > 0)
		queue_msg(l, text, false);
	lws_sul_schedule(l->ctx, 0, &l->sul_status, on_status, usec(a->status_interval));
}

/* Every update interval: control tick, host figures, one data frame. */
static void
on_tick(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_tick);
	struct pk_agent *a = l->a;
	int64_t		now = pk_mono_ms();
	bool		lost = !l->ws_up && now - l->last_contact_ms > (int64_t) (a->failsafe_grace * 1000);
	int64_t		seq = a->buf.next_seq;
	char	   *json;
	int64_t		step = (int64_t) (a->settings.update_interval * 1000);

	pk_control_tick(a, lost);
	pk_proc_sample(&a->proc, now);
	json = pk_build_data(a, seq);
	if (!json || pk_buffer_push(&a->buf, seq, json) != 0)
		pk_log(PK_LOG_ERROR, "out of memory: frame %" PRId64 " not buffered", seq);
	request_write(l);
	/* Keep a steady cadence; skip ticks rather than bunch them after a stall. */
	l->next_tick_ms += step;
	if (l->next_tick_ms <= now)
		l->next_tick_ms = now + step;
	lws_sul_schedule(l->ctx, 0, &l->sul_tick, on_tick, (l->next_tick_ms - now) * 1000);
}

static void
on_sim(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_sim);

	pk_sim_step(l->a->sim, 1.0);
	lws_sul_schedule(l->ctx, 0, &l->sul_sim, on_sim, LWS_US_PER_SEC);
}

static double
round1(double v)
{
	return (double) pk_round(v * 10) / 10;
}

/*
 * The protocol's fan status words are ok, warning, critical, error,
 * failed, stalled, stopped and unknown; map the agent's own to them (the
 * details are in the log and the status message).
 */
static const char *
wire_status(const char *status)
{
	static const struct
	{
		const char *ours;
		const char *wire;
	}			map[] = {
		{"ok", "ok"}, {"auto", "ok"}, {"emergency", "critical"}, {"emergency_stop", "warning"},
		{"failsafe", "warning"}, {"reasserted", "warning"}, {"error", "error"},
		{"stalled", "stalled"}, {"stopped", "stopped"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(status, map[i].ours) == 0)
			return map[i].wire;
	return "unknown";
}

/*
 * Which entries go into a frame when a host has more than the protocol
 * allows (review L4: a frame over the limit is refused whole, so such a
 * host stored nothing).  Sensors: the CPU package first, then the hottest.
 * Fans: those the agent can drive first, then the fastest.
 */
static bool
is_cpu_package(const struct pk_sensor *s)
{
	return strcmp(s->kind, "cpu") == 0 &&
		(strstr(s->id, "package") || strstr(s->id, "tctl") || strstr(s->id, "tdie"));
}

static int
sensor_rank(const void *x, const void *y, void *arg)
{
	const struct pk_sensor *sensors = arg;
	const struct pk_sensor *a = &sensors[*(const int *) x],
			   *b = &sensors[*(const int *) y];

	if (is_cpu_package(a) != is_cpu_package(b))
		return is_cpu_package(a) ? -1 : 1;
	return a->temp > b->temp ? -1 : a->temp < b->temp ? 1 : 0;
}

static int
fan_rank(const void *x, const void *y, void *arg)
{
	const struct pk_fan *fans = arg;
	const struct pk_fan *a = &fans[*(const int *) x],
			   *b = &fans[*(const int *) y];

	if ((a->pwm_path != NULL) != (b->pwm_path != NULL))
		return a->pwm_path ? -1 : 1;
	return a->rpm > b->rpm ? -1 : a->rpm < b->rpm ? 1 : 0;
}

/*
 * Mark in keep[] the n entries (of count, those with want[i]) that rank
 * first; returns how many were left out.
 */
static int
select_entries(int count, const bool *want, int n, bool *keep,
			   int (*rank) (const void *, const void *, void *), void *arg)
{
	int		   *order = malloc(sizeof(int) * (size_t) (count ? count : 1));
	int			m = 0;

	for (int i = 0; i < count; i++)
		keep[i] = want[i];
	for (int i = 0; i < count; i++)
		if (want[i])
			m++;
	if (m <= n)
	{
		free(order);
		return 0;
	}
	if (!order)
	{
		/* Out of memory: the first n, rather than a frame refused whole. */
		for (int i = 0, k = 0; i < count; i++)
			keep[i] = want[i] && k++ < n;
		return m - n;
	}
	m = 0;
	for (int i = 0; i < count; i++)
		if (want[i])
			order[m++] = i;
	qsort_r(order, (size_t) m, sizeof(int), rank, arg);
	for (int i = n; i < m; i++)
		keep[order[i]] = false;
	free(order);
	return m - n;
}

/* Build the data object of one frame from the current readings. */
char *
pk_build_data(struct pk_agent *a, int64_t seq)
{
	cJSON	   *d = cJSON_CreateObject();
	cJSON	   *sensors,
			   *fans,
			   *health;
	char	   *out = NULL;
	bool		ok;
	int			n = a->hw.nsensors > a->hw.nfans ? a->hw.nsensors : a->hw.nfans;
	bool	   *want = calloc((size_t) n + 1, sizeof(bool));
	bool	   *keep_s = calloc((size_t) a->hw.nsensors + 1, sizeof(bool));
	bool	   *keep_f = calloc((size_t) a->hw.nfans + 1, sizeof(bool));
	int			omit_s,
				omit_f;

	if (!d || !want || !keep_s || !keep_f)
	{
		cJSON_Delete(d);
		free(want);
		free(keep_s);
		free(keep_f);
		return NULL;
	}
	for (int i = 0; i < a->hw.nsensors; i++)
		want[i] = a->hw.sensors[i].valid;
	omit_s = select_entries(a->hw.nsensors, want, PK_WIRE_MAX_SENSORS, keep_s, sensor_rank, a->hw.sensors);
	for (int i = 0; i < a->hw.nfans; i++)
		want[i] = true;
	omit_f = select_entries(a->hw.nfans, want, PK_WIRE_MAX_FANS, keep_f, fan_rank, a->hw.fans);
	if (omit_s != a->sensors_omitted || omit_f != a->fans_omitted)
		pk_log(omit_s || omit_f ? PK_LOG_WARN : PK_LOG_INFO,
			   "this host has more than the protocol carries (%d sensors, %d fans a frame): "
			   "leaving out %d sensor(s) and %d fan(s)", PK_WIRE_MAX_SENSORS, PK_WIRE_MAX_FANS,
			   omit_s, omit_f);
	a->sensors_omitted = omit_s;
	a->fans_omitted = omit_f;
	ok = cJSON_AddStringToObject(d, "agentId", a->agent_id) &&
		cJSON_AddNumberToObject(d, "timestamp", (double) pk_now_ms()) &&
		cJSON_AddNumberToObject(d, "seq", (double) seq) &&
		(sensors = cJSON_AddArrayToObject(d, "sensors")) != NULL &&
		(fans = cJSON_AddArrayToObject(d, "fans")) != NULL &&
		(health = cJSON_AddObjectToObject(d, "systemHealth")) != NULL;
	for (int i = 0; ok && i < a->hw.nsensors; i++)
	{
		struct pk_sensor *s = &a->hw.sensors[i];
		cJSON	   *o;

		if (!keep_s[i])
			continue;
		ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(sensors, o) &&
			cJSON_AddStringToObject(o, "id", s->id) &&
			cJSON_AddNumberToObject(o, "temperature", round1(s->temp)) &&
			cJSON_AddStringToObject(o, "type", s->kind) &&
			(!s->has_max || cJSON_AddNumberToObject(o, "max_temp", round1(s->max_temp))) &&
			(!s->has_crit || cJSON_AddNumberToObject(o, "crit_temp", round1(s->crit_temp)));
	}
	for (int i = 0; ok && i < a->hw.nfans; i++)
	{
		struct pk_fan *f = &a->hw.fans[i];
		double		speed = f->pwm >= 0 ? (double) pk_round(f->pwm * 100.0 / 255.0) : 0;
		const char *status = f->status;
		cJSON	   *o;

		if (!keep_f[i])
			continue;
		if (f->pwm > 25 && f->rpm_path && f->rpm == 0)
			status = "stalled";
		else if (f->pwm == 0 && f->rpm_path && f->rpm == 0)
			status = "stopped";
		status = wire_status(status);
		ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(fans, o) &&
			cJSON_AddStringToObject(o, "id", f->id) &&
			cJSON_AddNumberToObject(o, "speed", speed) &&
			cJSON_AddNumberToObject(o, "rpm", (double) f->rpm) &&
			cJSON_AddNumberToObject(o, "targetSpeed", f->target >= 0 ? round1(f->target) : speed) &&
			cJSON_AddStringToObject(o, "status", status);
	}
	if (ok)
	{
		struct pk_proc *p = &a->proc;

		ok = (p->cpu_usage < 0 || cJSON_AddNumberToObject(health, "cpuUsage", round1(p->cpu_usage))) &&
			(p->mem_usage < 0 || cJSON_AddNumberToObject(health, "memoryUsage", round1(p->mem_usage))) &&
			cJSON_AddNumberToObject(health, "agentUptime", (double) ((pk_mono_ms() - a->started_ms) / 1000)) &&
			(p->disk_usage < 0 || cJSON_AddNumberToObject(health, "diskUsage", round1(p->disk_usage))) &&
			(p->rx_rate < 0 || cJSON_AddNumberToObject(health, "netRxBytesPerSec", (double) pk_round(p->rx_rate))) &&
			(p->tx_rate < 0 || cJSON_AddNumberToObject(health, "netTxBytesPerSec", (double) pk_round(p->tx_rate))) &&
			(p->load1 < 0 || cJSON_AddNumberToObject(health, "load1", p->load1));
	}
	if (ok)
		out = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	free(want);
	free(keep_s);
	free(keep_f);
	return out;
}

/* ---- HTTP ---- */

static void
http_finish(struct http_req *r, bool ok)
{
	if (!r->in_flight)
		return;
	r->in_flight = false;
	r->wsi = NULL;
	if (r->resp)
		r->resp[r->resp_len] = '\0';
	r->done(r, ok);
}

static int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct http_req *r = lws_get_opaque_user_data(wsi);

	if (!r || r->wsi != wsi)
		return 0;
	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			{
				unsigned char **p = (unsigned char **) in,
						   *end = (*p) + len;
				char		clen[24];

				snprintf(clen, sizeof(clen), "%zu", r->body_len);
				if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
												 (const unsigned char *) r->auth,
												 (int) strlen(r->auth), p, end) ||
					lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
												 (const unsigned char *) "application/json", 16, p, end) ||
					lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
												 (const unsigned char *) clen, (int) strlen(clen), p, end))
					return -1;
				lws_client_http_body_pending(wsi, 1);
				lws_callback_on_writable(wsi);
				break;
			}
		case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
			{
				unsigned char *buf = malloc(LWS_PRE + r->body_len);
				int			n;

				if (!buf)
					return -1;
				memcpy(buf + LWS_PRE, r->body, r->body_len);
				lws_client_http_body_pending(wsi, 0);
				n = lws_write(wsi, buf + LWS_PRE, r->body_len, LWS_WRITE_HTTP_FINAL);
				free(buf);
				if (n < (int) r->body_len)
					return -1;
				r->link->bytes_out += r->body_len;
				break;
			}
		case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
			r->status = (int) lws_http_client_http_response(wsi);
			break;
		case LWS_CALLBACK_RECEIVE_CLIENT_HTTP:
			{
				char		buffer[4096 + LWS_PRE];
				char	   *px = buffer + LWS_PRE;
				int			lenx = sizeof(buffer) - LWS_PRE;

				if (lws_http_client_read(wsi, &px, &lenx) < 0)
					return -1;
				break;
			}
		case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
			{
				char	   *nb;

				if (r->resp_len + len + 1 > HTTP_RESP_MAX)
				{
					pk_log(PK_LOG_WARN, "HTTP response over %d bytes: dropped", HTTP_RESP_MAX);
					http_finish(r, false);
					return -1;
				}
				nb = realloc(r->resp, r->resp_len + len + 1);
				if (!nb)
				{
					http_finish(r, false);
					return -1;
				}
				r->resp = nb;
				memcpy(r->resp + r->resp_len, in, len);
				r->resp_len += len;
				r->link->bytes_in += len;
				break;
			}
		case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
			http_finish(r, true);
			return -1;			/* one request per connection */
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			pk_log(PK_LOG_DEBUG, "HTTP %s: %s", r->path, in ? (const char *) in : "connection failed");
			http_finish(r, false);
			break;
		case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
			http_finish(r, r->status != 0 && r->resp_len > 0);
			break;
		default:
			break;
	}
	(void) user;
	return 0;
}

/* Start r (path, auth, body set); 0 when it is on its way. */
static int
http_start(struct pk_link *l, struct http_req *r)
{
	struct lws_client_connect_info i;

	memset(&i, 0, sizeof(i));
	free(r->resp);
	r->resp = NULL;
	r->resp_len = 0;
	r->status = 0;
	r->in_flight = true;
	i.context = l->ctx;
	i.address = l->host;
	i.port = l->port;
	i.path = r->path;
	i.host = l->host;
	i.origin = l->host;
	i.method = "POST";
	i.alpn = "http/1.1";
	i.local_protocol_name = "pankha-http";
	i.opaque_user_data = r;
	i.pwsi = &r->wsi;
	if (l->tls)
	{
		i.ssl_connection = LCCSCF_USE_SSL;
		if (l->a->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
				LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
	}
	if (!lws_client_connect_via_info(&i))
	{
		r->in_flight = false;
		r->wsi = NULL;
		return -1;
	}
	return 0;
}

/* Append to a growing string; false when out of memory. */
static bool
sb_add(char **s, size_t *len, size_t *cap, const char *add, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		size_t		nc = (*len + n + 1) * 2;
		char	   *nb = realloc(*s, nc);

		if (!nb)
			return false;
		*s = nb;
		*cap = nc;
	}
	memcpy(*s + *len, add, n);
	*len += n;
	(*s)[*len] = '\0';
	return true;
}

/* Send buffered frames and pending acks by POST /api/v1/agents/sync. */
static void
start_sync(struct pk_link *l)
{
	struct http_req *r = &l->sync;
	struct pk_agent *a = l->a;
	char	   *body = NULL,
			   *id;
	size_t		len = 0,
				cap = 0;
	cJSON	   *idj = cJSON_CreateString(a->agent_id);
	bool		ok;
	size_t		nframes = 0;
	int			nacks = 0;

	if (r->in_flight || l->stopping)
		return;
	id = idj ? cJSON_PrintUnformatted(idj) : NULL;
	cJSON_Delete(idj);
	ok = id && sb_add(&body, &len, &cap, "{\"agent_id\":", 12) && sb_add(&body, &len, &cap, id, strlen(id)) &&
		sb_add(&body, &len, &cap, ",\"frames\":[", 11);
	free(id);
	r->last_seq = -1;
	r->nseqs = 0;
	if (!l->sync_max_bytes)
		l->sync_max_bytes = SYNC_MAX_BYTES;
	for (size_t i = 0, bytes = 0; ok && i < a->buf.count && nframes < SYNC_BATCH; i++)
	{
		const struct pk_frame *f = pk_buffer_at(&a->buf, i);

		/* At least one frame, so that a batch always moves on. */
		if (nframes > 0 && bytes + f->len + 1 > l->sync_max_bytes)
			break;
		bytes += f->len + 1;

		ok = (nframes == 0 || sb_add(&body, &len, &cap, ",", 1)) &&
			sb_add(&body, &len, &cap, f->json, f->len);
		r->last_seq = f->seq;
		r->seqs[r->nseqs++] = f->seq;
		nframes++;
	}
	ok = ok && sb_add(&body, &len, &cap, "],\"acks\":[", 10);
	for (struct out_msg *m = l->q_head; ok && m; m = m->next)
	{
		if (!m->is_ack)
			continue;
		ok = (nacks == 0 || sb_add(&body, &len, &cap, ",", 1)) && sb_add(&body, &len, &cap, m->text, m->len);
		m->in_sync = true;
		nacks++;
	}
	ok = ok && sb_add(&body, &len, &cap, "]}", 2);
	if (!ok)
	{
		pk_log(PK_LOG_ERROR, "out of memory building a sync request");
		free(body);
		for (struct out_msg *m = l->q_head; m; m = m->next)
			m->in_sync = false;
		return;
	}
	free(r->body);
	r->body = body;
	r->body_len = len;
	r->done = sync_done;
	pk_log(PK_LOG_DEBUG, "sync: %zu frame(s), %d ack(s)", nframes, nacks);
	if (http_start(l, r) != 0)
		sync_done(r, false);
}

static void
on_sync_timer(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_sync);

	if (l->http_mode && !l->ws_up)
		start_sync(l);
}

/*
 * The highest seq the sync stored for good.  The answer has one outcome
 * per frame ({"stored"} or {"sqlstate","error"}); a frame refused as
 * invalid will never be stored and is logged and passed over, but one that
 * failed for a passing reason (connection, serialization, resources) is
 * sent again, with everything after it.
 */
static int64_t
sync_stored_upto(struct http_req *r, const cJSON *results)
{
	int			i = 0;
	const cJSON *res;

	if (!cJSON_IsArray(results))
		return r->last_seq;
	cJSON_ArrayForEach(res, results)
	{
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(res, "sqlstate");
		const cJSON *error = cJSON_GetObjectItemCaseSensitive(res, "error");

		if (i >= r->nseqs)
			break;
		if (cJSON_IsString(state))
		{
			const char *s = state->valuestring;
			bool		transient = !strncmp(s, "08", 2) || !strncmp(s, "40", 2) ||
				!strncmp(s, "53", 2) || !strncmp(s, "57", 2) || !strncmp(s, "58", 2);

			pk_log(PK_LOG_WARN, "sync: frame seq %" PRId64 " not stored (%s: %s)%s", r->seqs[i], s,
				   cJSON_IsString(error) ? error->valuestring : "", transient ? "; sending it again" : "");
			if (transient)
				return i > 0 ? r->seqs[i - 1] : -1;
		}
		i++;
	}
	return r->last_seq;
}

/* Work through a sync response: acks, commands, config. */
static void
sync_done(struct http_req *r, bool ok)
{
	struct pk_link *l = r->link;
	cJSON	   *resp = NULL;
	const cJSON *cmds,
			   *config,
			   *c;
	struct out_msg *m,
			   *next;

	if (ok && r->status == 413 && r->nseqs > 0)
	{
		/*
		 * Over the server's body limit: send fewer frames at a time, and
		 * drop a frame that is too large alone, or the fallback would
		 * send the same refused batch for ever (review L5).
		 */
		for (m = l->q_head; m; m = m->next)
			m->in_sync = false;
		if (r->nseqs > 1)
		{
			l->sync_max_bytes = r->body_len / 2 > 1 ? r->body_len / 2 : 1;
			pk_log(PK_LOG_WARN, "sync: %d frames in %zu bytes are over the server's body limit; "
				   "sending at most %zu bytes at a time", r->nseqs, r->body_len, l->sync_max_bytes);
		}
		else
		{
			pk_log(PK_LOG_ERROR, "sync: frame seq %" PRId64 " alone (%zu bytes) is over the server's "
				   "body limit: dropped", r->seqs[0], r->body_len);
			pk_buffer_ack(&l->a->buf, r->seqs[0]);
			l->a->buf.dropped++;
		}
		if (l->http_mode && !l->ws_up && !l->stopping)
			lws_sul_schedule(l->ctx, 0, &l->sul_sync, on_sync_timer, 0);
		return;
	}
	ok = ok && r->status == 200;
	if (ok)
	{
		resp = cJSON_ParseWithLength(r->resp ? r->resp : "", r->resp_len);
		ok = cJSON_IsObject(resp);
	}
	for (m = l->q_head; m; m = next)
	{
		next = m->next;
		if (m->in_sync && ok)
			unlink_msg(l, m);
		else
			m->in_sync = false;
	}
	if (!ok)
	{
		cJSON_Delete(resp);
		if (r->status == 401 || r->status == 403)
			pk_log(PK_LOG_ERROR, "sync refused (HTTP %d): check the agent id and token", r->status);
		if (l->http_mode)
			pk_log(PK_LOG_WARN, "HTTP sync failed (status %d); retrying", r->status);
		else
			pk_log(PK_LOG_INFO, "HTTP sync fallback not available (status %d)", r->status);
		if (l->http_mode && !l->stopping)
			lws_sul_schedule(l->ctx, 0, &l->sul_sync, on_sync_timer,
							 usec(l->a->settings.update_interval));
		return;
	}
	l->last_contact_ms = pk_mono_ms();
	if (!l->http_mode && !l->ws_up)
	{
		pk_log(PK_LOG_WARN, "WebSocket handshakes keep failing but HTTP works: "
			   "syncing over HTTP while retrying the WebSocket");
		l->http_mode = true;
	}
	if (r->last_seq >= 0)
		pk_buffer_ack(&l->a->buf, sync_stored_upto(r, cJSON_GetObjectItemCaseSensitive(resp, "frames")));
	cmds = cJSON_GetObjectItemCaseSensitive(resp, "commands");
	if (cJSON_IsArray(cmds))
		cJSON_ArrayForEach(c, cmds)
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "data");

		handle_command(l, cJSON_IsObject(d) ? d : c);
	}
	config = cJSON_GetObjectItemCaseSensitive(resp, "config");
	if (cJSON_IsObject(config))
		apply_config(l, config);
	cJSON_Delete(resp);
	if (l->http_mode && !l->ws_up && !l->stopping)
	{
		bool		more = l->a->buf.count > 0 && pk_buffer_after(&l->a->buf, r->last_seq);
		bool		acks = false;

		for (m = l->q_head; m; m = m->next)
			acks |= m->is_ack;
		lws_sul_schedule(l->ctx, 0, &l->sul_sync, on_sync_timer,
						 more || acks ? 0 : usec(l->a->settings.update_interval));
	}
}

/* Store the token from a register response. */
static void
register_done(struct http_req *r, bool ok)
{
	struct pk_link *l = r->link;
	struct pk_agent *a = l->a;
	cJSON	   *resp = ok ? cJSON_ParseWithLength(r->resp ? r->resp : "", r->resp_len) : NULL;
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(resp, "token");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(resp, "agent_id");
	int			fd;
	size_t		tl;

	l->stopping = true;
	l->exit_code = 1;
	lws_cancel_service(l->ctx);
	if (!ok || (r->status != 200 && r->status != 201))
	{
		pk_log(PK_LOG_ERROR, "enrollment failed: %s%d %.200s", ok ? "HTTP " : "no answer, status ",
			   r->status, r->resp ? r->resp : "");
		cJSON_Delete(resp);
		return;
	}
	if (!cJSON_IsString(tok) || !tok->valuestring[0])
	{
		pk_log(PK_LOG_ERROR, "enrollment answer has no token");
		cJSON_Delete(resp);
		return;
	}
	/* Only the owner (root for the system service) may read the token. */
	fd = open(a->token_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT && strrchr(a->token_file, '/'))
	{
		/* First enrollment on this host: create /etc/pankha (or the like). */
		char	   *dir = strdup(a->token_file);

		if (dir)
		{
			*strrchr(dir, '/') = '\0';
			if (*dir && mkdir(dir, 0755) == 0)
				fd = open(a->token_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
			free(dir);
		}
	}
	tl = strlen(tok->valuestring);
	if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, tok->valuestring, tl) != (ssize_t) tl ||
		write(fd, "\n", 1) != 1 || fsync(fd) != 0)
	{
		pk_log(PK_LOG_ERROR, "cannot write the token to %s: %s", a->token_file, strerror(errno));
		if (fd >= 0)
			close(fd);
		cJSON_Delete(resp);
		return;
	}
	close(fd);
	pk_log(PK_LOG_INFO, "enrolled as %s; token stored in %s",
		   cJSON_IsString(id) ? id->valuestring : a->agent_id, a->token_file);
	cJSON_Delete(resp);
	l->exit_code = 0;
}

/* Register with --enroll/--enrollment-key and store the token. */
int
pk_link_enroll(struct pk_agent *a)
{
	struct pk_link *l = a->link;
	struct http_req *r = &l->reg;
	cJSON	   *body = cJSON_CreateObject(),
			   *caps;
	char		host[256] = "";
	size_t		n;

	gethostname(host, sizeof(host) - 1);
	caps = cJSON_AddObjectToObject(body, "capabilities");
	if (!body || !caps || !cJSON_AddStringToObject(body, "agent_id", a->agent_id) ||
		!cJSON_AddStringToObject(body, "name", a->agent_name ? a->agent_name : a->agent_id) ||
		!cJSON_AddStringToObject(body, "hostname", host) ||
		!cJSON_AddNumberToObject(caps, "sensors", a->hw.nsensors) ||
		!cJSON_AddNumberToObject(caps, "fans", a->hw.nfans) ||
		!cJSON_AddBoolToObject(caps, "fan_control", true) ||
		!cJSON_AddStringToObject(caps, "agent_version", PK_AGENT_VERSION))
	{
		cJSON_Delete(body);
		return -1;
	}
	r->body = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	n = strlen(a->enrollment_key) + 8;
	r->auth = malloc(n);
	n = strlen(l->http_base) + 32;
	r->path = malloc(n);
	if (!r->body || !r->auth || !r->path)
		return -1;
	snprintf(r->auth, strlen(a->enrollment_key) + 8, "Bearer %s", a->enrollment_key);
	snprintf(r->path, n, "%s/api/v1/agents/register", l->http_base);
	r->body_len = strlen(r->body);
	r->done = register_done;
	l->exit_code = 1;
	if (http_start(l, r) != 0)
	{
		pk_log(PK_LOG_ERROR, "cannot connect to %s:%d", l->host, l->port);
		return -1;
	}
	while (!l->stopping && !stop_signal)
		if (lws_service(l->ctx, 0) < 0)
			break;
	return l->exit_code;
}

/* Run the agent until SIGTERM/SIGINT; returns the exit status. */
int
pk_link_run(struct pk_agent *a)
{
	struct pk_link *l = a->link;
	size_t		n = strlen(a->token) + 8;
	struct sigaction sa;

	l->auth = malloc(n);
	l->sync.auth = malloc(n);
	n = strlen(l->http_base) + 32;
	l->sync.path = malloc(n);
	if (!l->auth || !l->sync.auth || !l->sync.path)
		return 1;
	snprintf(l->auth, strlen(a->token) + 8, "Bearer %s", a->token);
	snprintf(l->sync.auth, strlen(a->token) + 8, "Bearer %s", a->token);
	snprintf(l->sync.path, n, "%s/api/v1/agents/sync", l->http_base);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	l->last_contact_ms = pk_mono_ms();
	l->next_tick_ms = pk_mono_ms();
	lws_sul_schedule(l->ctx, 0, &l->sul_tick, on_tick, 0);
	lws_sul_schedule(l->ctx, 0, &l->sul_connect, connect_ws, 0);
	if (a->sim)
		lws_sul_schedule(l->ctx, 0, &l->sul_sim, on_sim, LWS_US_PER_SEC);

	while (!stop_signal && !l->stopping)
		if (lws_service(l->ctx, 0) < 0)
			break;
	l->stopping = true;
	if (stop_signal)
		pk_log(PK_LOG_INFO, "signal %d: stopping", (int) stop_signal);
	pk_log(PK_LOG_INFO, "wire totals: %" PRIu64 " bytes out, %" PRIu64 " bytes in",
		   l->bytes_out, l->bytes_in);
	return 0;
}

/* Ask the loop to stop (tests and signals). */
void
pk_link_stop(struct pk_agent *a)
{
	if (a->link)
	{
		a->link->stopping = true;
		if (a->link->ctx)
			lws_cancel_service(a->link->ctx);
	}
}

/* Close connections and free the link. */
void
pk_link_destroy(struct pk_agent *a)
{
	struct pk_link *l = a->link;

	if (!l)
		return;
	l->stopping = true;
	signal_ctx = NULL;
	if (l->ctx)
		lws_context_destroy(l->ctx);
	while (l->q_head)
		unlink_msg(l, l->q_head);
	free(l->url_copy);
	free(l->ws_path);
	free(l->http_base);
	free(l->auth);
	free(l->rx);
	free(l->tx);
	free(l->sync.path);
	free(l->sync.auth);
	free(l->sync.body);
	free(l->sync.resp);
	free(l->reg.path);
	free(l->reg.auth);
	free(l->reg.body);
	free(l->reg.resp);
	free(l);
	a->link = NULL;
}
