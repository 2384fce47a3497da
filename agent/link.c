/*
 * link.c - the agent's WebSocket link to the bridge (DESIGN.md): the
 * libwebsockets client context, connecting with backoff, pacing what is
 * written, reading and dispatching what the server sends, and the timers
 * of the event loop (data ticks, pings, status, the simulator).
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
 * The HTTP fallback is in sync.c, enrollment in enroll.c, the HTTP client
 * both use in http.c and the frames themselves are built in frame.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "link.h"

volatile sig_atomic_t link_stop_signal;
static struct lws_context *signal_ctx;

static int	ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
						void *in, size_t len);
static void connect_ws(lws_sorted_usec_list_t *sul);
static void schedule_reconnect(struct pk_link *l, const char *why);
static void on_tick(lws_sorted_usec_list_t *sul);
static void on_ping(lws_sorted_usec_list_t *sul);
static void on_sim(lws_sorted_usec_list_t *sul);
static void on_status(lws_sorted_usec_list_t *sul);
static void handle_message(struct pk_link *l, const char *text, size_t len);
static void drop_volatile(struct pk_link *l);
static char *url_encode(const char *s);

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
 * What the server sends compressed is inflated by inflate.c, not by lws.
 */
static const struct lws_extension extensions[] = {
	{"permessage-deflate", pk_inflate_extension,
	"permessage-deflate; client_max_window_bits"},
	{NULL, NULL, NULL}
};

int64_t
link_usec(double seconds)
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

	link_request_write(l);
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
	link_stop_signal = sig;
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
void
link_request_write(struct pk_link *l)
{
	if (l->ws && l->ws_up)
		lws_callback_on_writable(l->ws);
}

/* Append a message to the write queue (takes text); 0 on success. */
int
link_queue_msg(struct pk_link *l, char *text, bool is_ack)
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
	link_request_write(l);
	return 0;
}

/* Queue a command_ack's data object (consumes ack). */
void
link_queue_ack(struct pk_link *l, cJSON *ack)
{
	char	   *text;

	if (!ack)
		return;
	text = cJSON_PrintUnformatted(ack);
	cJSON_Delete(ack);
	if (link_queue_msg(l, text, true) != 0)
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
void
link_unlink_msg(struct pk_link *l, struct out_msg *m)
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
	pk_inflate_reset(l);		/* the server's context starts afresh */
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
	lws_sul_schedule(l->ctx, 0, &l->sul_connect, connect_ws, link_usec(delay));
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
	pk_inflate_reset(l);
	l->a->meta_settled = false;
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
			sync_start(l);
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
	l->a->meta_settled = false;	/* the next frame carries every static field */
	if (l->a->deflate)
	{
		/*
		 * Frames are small and a few seconds apart: zlib's best level
		 * finds the previous frame's runs in the window (lws' default,
		 * level 1, keeps a short match chain and misses most of them).
		 * memLevel 5: a 4 KB hash and 2,048 symbols a block are plenty for
		 * a 2 KB frame; 9 (256 KB) sent the same bytes for 110 KB more.
		 */
		lws_set_extension_option(wsi, "permessage-deflate", "compression_level", "9");
		lws_set_extension_option(wsi, "permessage-deflate", "mem_level", "5");
	}
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
	lws_sul_schedule(l->ctx, 0, &l->sul_ping, on_ping, link_usec(l->a->ping_interval));
	lws_sul_schedule(l->ctx, 0, &l->sul_status, on_status, 0);
	link_request_write(l);
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
		link_unlink_msg(l, m);
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
				if (l->z_refuse_code)
				{
					/* inflate.c: the server's compressed stream cannot go on */
					lws_close_reason(wsi, (enum lws_close_status) l->z_refuse_code,
									 (unsigned char *) l->z_refuse_reason,
									 strlen(l->z_refuse_reason));
					return -1;
				}
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
void
link_apply_config(struct pk_link *l, const cJSON *data)
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
	if (cid && !cJSON_IsNull(cid) && !cJSON_IsString(cid) && !cJSON_IsNumber(cid))
	{
		/* an ack names its command by a string (or a number): nothing to answer this with */
		pk_log(PK_LOG_WARN, "config_update with a command_id that is neither a string nor a number: not acked");
		cid = NULL;
	}
	if (cid && !cJSON_IsNull(cid))
	{
		cJSON	   *ack = cJSON_CreateObject();
		char		idbuf[32];
		char		ts[40];
		time_t		now = time(NULL);
		struct tm	tm;

		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (cJSON_IsNumber(cid))
			snprintf(idbuf, sizeof(idbuf), "%.0f", cid->valuedouble);	/* as commands do */
		if (ack && cJSON_AddStringToObject(ack, "command_id",
										   cJSON_IsString(cid) ? cid->valuestring : idbuf) &&
			cJSON_AddBoolToObject(ack, "success", rc == 0) &&
			(rc == 0 ? cJSON_AddNullToObject(ack, "error") != NULL :
			 cJSON_AddStringToObject(ack, "error", err) != NULL) &&
			cJSON_AddStringToObject(ack, "timestamp", ts))
			link_queue_ack(l, ack);
		else
			cJSON_Delete(ack);
	}
}

void
link_handle_command(struct pk_link *l, const cJSON *data)
{
	link_queue_ack(l, pk_command_handle(l->a, data));
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

		/* a seq the agent could have sent (0 to 2^53 - 1); another is ignored, not converted */
		if (cJSON_IsNumber(seq) && seq->valuedouble >= 0 && seq->valuedouble <= 9007199254740991.0)
		{
			size_t		n = pk_buffer_ack(&l->a->buf, (int64_t) seq->valuedouble);

			pk_log(PK_LOG_DEBUG, "ack %.0f: %zu frame(s) done, %zu waiting", seq->valuedouble,
				   n, l->a->buf.count);
		}
	}
	else if (strcmp(type->valuestring, "command") == 0)
	{
		if (cJSON_IsObject(data))
			link_handle_command(l, data);
		else
			pk_log(PK_LOG_WARN, "ignoring a command without a data object");
	}
	else if (strcmp(type->valuestring, "config_update") == 0)
	{
		if (cJSON_IsObject(data))
			link_apply_config(l, data);
	}
	else if (strcmp(type->valuestring, "connected") == 0)
	{
		const cJSON *rate = cJSON_GetObjectItemCaseSensitive(data, "rate_per_minute");
		const cJSON *maxm = cJSON_GetObjectItemCaseSensitive(data, "max_message");

		/* a size the bridge could mean (1 KB to 1 GB); another is ignored, not converted */
		if (cJSON_IsNumber(maxm) && maxm->valuedouble >= 1024 && maxm->valuedouble <= 1073741824.0)
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
		link_request_write(l);
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
	link_queue_msg(l, strdup("{\"type\":\"ping\"}"), false);
	lws_sul_schedule(l->ctx, 0, &l->sul_ping, on_ping, link_usec(l->a->ping_interval));
}

/* {"type":"status",...} every status interval (built in frame.c). */
static void
on_status(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_status);
	char	   *text;

	if (!l->ws_up)
		return;
	text = pk_build_status(l->a);
	if (text)
		link_queue_msg(l, text, false);
	lws_sul_schedule(l->ctx, 0, &l->sul_status, on_status, link_usec(l->a->status_interval));
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
	json = pk_build_data(a, seq, l->ws_up);
	if (!json || pk_buffer_push(&a->buf, seq, json) != 0)
		pk_log(PK_LOG_ERROR, "out of memory: frame %" PRId64 " not buffered", seq);
	link_request_write(l);
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

	while (!link_stop_signal && !l->stopping)
		if (lws_service(l->ctx, 0) < 0)
			break;
	l->stopping = true;
	if (link_stop_signal)
		pk_log(PK_LOG_INFO, "signal %d: stopping", (int) link_stop_signal);
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
		link_unlink_msg(l, l->q_head);
	free(l->url_copy);
	free(l->ws_path);
	free(l->http_base);
	free(l->auth);
	free(l->rx);
	pk_inflate_reset(l);
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
