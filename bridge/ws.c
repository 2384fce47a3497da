/*
 * ws.c - the WebSocket layer both endpoints share: one protocol callback
 * for /ws/agent and /ws/ui.
 *
 * The handshake filter picks the endpoint row by path, admits or refuses
 * (draining, --max-connections, --connect-limit-ip), and hands the rest
 * of the decision to the row's filter.  From then on this file does what
 * every connection needs alike: messages are queued and written one per
 * WRITEABLE callback with LWS_PRE headroom; a client that lets more than
 * --max-queued-out bytes pile up is dropped; a close is queued behind
 * what was sent before it and goes out with lws_close_reason; fragments
 * are reassembled up to --max-message (1009 beyond); permessage-deflate
 * is answered and sized (deflate.c).  The endpoint sees whole messages,
 * its connection established, and its connection closed.
 *
 * A close the bridge decides is a lingering close (ws_writeable): the
 * close frame is written here, and the socket stays open while what the
 * client still sends is read and thrown away, until the client answers
 * with its close (or closes) or WS_LINGER_S pass.  lws 4.1.6's own close
 * (lws_close_reason and -1) killed the socket at its next read while the
 * client kept sending; a socket closed with unread input answers RST, and
 * the client lost the close frame it had not read yet: such clients saw
 * 1006 instead of the code (test_close_while_sending).  No FIN follows
 * the close frame either: python websockets, handed EOF before it had
 * parsed what it had buffered, dropped the rest, close frame included.
 */
#include "ws.h"
#include "admission.h"

#include <string.h>

/* Seconds a closed connection is still read (and discarded) for its client's close. */
#define WS_LINGER_S 3
/*
 * Bytes a lingering connection is still read for: enough for what an
 * honest client had in flight and its own close; a client still flooding
 * past it is not read any more, so that its writes block and it turns to
 * reading (a client library then finds our close frame; closed on a
 * flood that goes on, a reset made python websockets drop what it had not
 * parsed yet, close frame included).
 */
#define WS_LINGER_READ_MAX (16 * 1024)

/* ---------------------------------------------------------------- send queues */

/* Queue a copy of text; -1 when memory is short. */
int
outq_push(struct outq *q, const char *text, size_t len, bool is_command)
{
	struct outmsg *m = malloc(sizeof(*m) + LWS_PRE + len);

	if (!m)
		return -1;
	m->next = NULL;
	m->len = len;
	m->queued_at = now_us();
	m->is_command = is_command;
	m->trace = NULL;
	memcpy(m->data + LWS_PRE, text, len);
	if (q->tail)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	q->bytes += len;
	return 0;
}

/* Take the oldest message off the queue. */
struct outmsg *
outq_pop(struct outq *q)
{
	struct outmsg *m = q->head;

	if (!m)
		return NULL;
	q->head = m->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= m->len;
	return m;
}

/* Drop everything queued. */
void
outq_clear(struct outq *q)
{
	struct outmsg *m;

	while ((m = outq_pop(q)) != NULL)
	{
		free(m->trace);
		free(m);
	}
}

/*
 * Write the oldest queued message (called from a WRITEABLE callback) and
 * ask for another callback if more remain.  Returns -1 when the write
 * failed and the connection should close.
 */
int
outq_write_one(struct lws *wsi, struct outq *q, uint64_t *frames_out,
			   uint64_t *bytes_out)
{
	struct outmsg *m = outq_pop(q);
	int			n;

	if (!m)
		return 0;
	n = lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
	if (n < (int) m->len)
	{
		free(m->trace);
		free(m);
		return -1;
	}
	if (m->is_command)
	{
		lws_usec_t	now = now_us();

		srv.m.commands_pushed++;
		histogram_observe(&srv.m.command_seconds, (double) (now - m->queued_at) / 1e6);
		if (m->trace)
			blog("debug", "command_trace", "%s q=%lld w=%lld%s", m->trace,
				 (long long) mono_to_real_us(m->queued_at), (long long) mono_to_real_us(now),
				 lws_partial_buffered(wsi) ? " partial" : "");
	}
	free(m->trace);
	(*frames_out)++;
	*bytes_out += m->len;
	srv.m.bytes_out += m->len;
	free(m);
	if (q->head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* ---------------------------------------------------------------- connections */

static const struct ws_endpoint *const *endpoints;
static struct ws_conn *conns;	/* every established connection */
static int	nconns;
static int	nshared;			/* of endpoints without their own budget */

static struct deflate_state *session_deflate(struct lws *wsi);
static void session_refuse(struct lws *wsi, int code, const char *reason);

/* The endpoints this bridge serves (a NULL-terminated list of rows). */
void
ws_init(const struct ws_endpoint *const *list)
{
	endpoints = list;
	deflate_set_hooks(session_deflate, session_refuse);
}

/* Established WebSocket connections, of every endpoint. */
int
ws_count(void)
{
	return nconns;
}

/*
 * Refuse a WebSocket handshake from the filter callback with an HTTP
 * status and {"error": message}; returns what the filter must return.
 */
int
ws_refuse(struct lws *wsi, unsigned int status, const char *message)
{
	struct sbuf body = {0}, resp = {0};
	cJSON	   *o = cJSON_CreateObject();
	char	   *text = NULL;
	const char *phrase;

	if (status == 401)
	{
		char		peer[64];

		/* M5: refused credentials are limited per address */
		limits_client_addr(wsi, peer, sizeof(peer));
		limits_auth_failed(peer);
	}
	switch (status)
	{
		case 401: phrase = "Unauthorized"; break;
		case 404: phrase = "Not Found"; break;
		case 429: phrase = "Too Many Requests"; break;
		case 503: phrase = "Service Unavailable"; break;
		default: phrase = "Error"; break;
	}
	if (o)
	{
		cJSON_AddStringToObject(o, "error", message);
		text = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
	}
	sbuf_puts(&body, text ? text : "{}");
	free(text);
	/* the status line and headers are written as they are: lws would say HTTP/1.0 here */
	for (int i = 0; i < LWS_PRE; i++)
		sbuf_append(&resp, " ", 1);
	sbuf_printf(&resp, "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\n"
				"content-length: %zu\r\nconnection: close\r\n%s\r\n%s",
				status, phrase, body.len,
				status == 401 ? "www-authenticate: Bearer\r\n" : "",
				body.data ? body.data : "");
	if (!resp.failed && !body.failed)
		lws_write(wsi, (unsigned char *) resp.data + LWS_PRE, resp.len - LWS_PRE,
				  LWS_WRITE_HTTP_HEADERS);
	sbuf_free(&body);
	sbuf_free(&resp);
	return -1;
}

/* Queue a message; a client that does not read what it is sent is dropped. */
void
ws_send(struct ws_conn *c, const char *text, size_t len, bool is_command)
{
	if (!c->wsi || c->close_code)
		return;
	if (c->out.bytes + len > srv.cfg.max_queued_out)
	{
		outq_clear(&c->out);
		if (c->ep->dropped)
			c->ep->dropped(c);
		ws_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, c->ep->slow_reason);
		return;
	}
	if (outq_push(&c->out, text, len, is_command))
	{
		ws_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		return;
	}
	lws_callback_on_writable(c->wsi);
}

/*
 * Attach trace (malloc'd, taken over) to the message queued last: logged
 * with its queue and write times when it is written (--verbose 2).
 */
void
ws_trace_last(struct ws_conn *c, char *trace)
{
	if (c->out.tail && !c->out.tail->trace)
		c->out.tail->trace = trace;
	else
		free(trace);
}

/* Send a cJSON message and free it. */
void
ws_send_json(struct ws_conn *c, cJSON *msg, bool is_command)
{
	char	   *text;

	if (!msg)
		return;
	text = cJSON_PrintUnformatted(msg);
	cJSON_Delete(msg);
	if (!text)
		return;
	ws_send(c, text, strlen(text), is_command);
	free(text);
}

/* Close a connection with code and reason, after what is queued (from anywhere). */
void
ws_close(struct ws_conn *c, int code, const char *reason)
{
	if (!c->wsi || c->close_code)
		return;
	c->close_code = code;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
	/* a paused socket would never see its close go out */
	ws_pause_rx(c, false);
	lws_callback_on_writable(c->wsi);
	/* if it never becomes writable, drop it anyway */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
}

/* Close every connection (shutdown). */
void
ws_close_all(int code, const char *reason)
{
	for (struct ws_conn *c = conns; c; c = c->next)
		ws_close(c, code, reason);
}

/* Stop or resume reading a connection (backpressure). */
void
ws_pause_rx(struct ws_conn *c, bool pause)
{
	if (!c->wsi || c->rx_paused == pause)
		return;
	lws_rx_flow_control(c->wsi, pause ? 0 : 1);
	c->rx_paused = pause;
}

static void
rx_free(struct ws_conn *c)
{
	free(c->rx);				/* keep idle connections small */
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
}

/* A piece of a message: hand complete ones to the endpoint; -1 closes now. */
static int
ws_receive(struct lws *wsi, struct ws_conn *c, const char *in, size_t len)
{
	bool		binary = lws_frame_is_binary(wsi);

	c->last_rx = now_us();
	if (c->close_code)
	{
		/*
		 * Closing: what the peer still sends is not read, so nothing after
		 * a refused frame can be stored and acknowledged before it (M3).
		 */
		rx_free(c);
		return 0;
	}
	if (c->rx_len + len > srv.cfg.max_message)
	{
		srv.m.closed_too_big++;
		rx_free(c);
		ws_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
		return 0;
	}
	if (!c->rx_len && lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi))
	{
		/* the usual case: the whole message in one piece */
		c->ep->message(c, in, len, binary);
		return 0;
	}
	if (c->rx_len + len > c->rx_cap)
	{
		size_t		ncap = c->rx_len + len + 1024;
		unsigned char *n;

		if (ncap > srv.cfg.max_message)
			ncap = srv.cfg.max_message;
		n = realloc(c->rx, ncap);
		if (!n)
		{
			lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
							 (unsigned char *) "out of memory", 13);
			return -1;
		}
		c->rx = n;
		c->rx_cap = ncap;
	}
	/* an empty fragment comes as NULL, before anything is allocated */
	if (len)
	{
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
	}
	if (lws_is_final_fragment(wsi))
	{
		c->ep->message(c, (const char *) c->rx, c->rx_len, binary);
		rx_free(c);
	}
	return 0;
}

/* WRITEABLE: one queued message, or the close once nothing is queued. */
static int
ws_writeable(struct lws *wsi, struct ws_conn *c)
{
	if (c->out.head)
	{
		/* what was queued before a close still goes out first */
		if (outq_write_one(wsi, &c->out, &c->frames_out, &c->bytes_out) < 0)
			return -1;
		if (c->close_code && !c->out.head)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if (c->close_code && !c->close_sent)
	{
		/*
		 * The close frame (RFC 6455 5.5.1: FIN and opcode 8, unmasked,
		 * the code and the reason), written raw: lws offers no public
		 * way to send one and keep the socket.
		 */
		unsigned char buf[LWS_PRE + 4 + sizeof(c->close_reason)];
		unsigned char *f = buf + LWS_PRE;
		size_t		rlen = strlen(c->close_reason);
		int			code = c->close_code;

		if (code < 1000 || code > 4999 || code == 1005 || code == 1006)
			code = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
		if (rlen > 123)
			rlen = 123;			/* a control frame carries 125 bytes at most */
		f[0] = 0x88;
		f[1] = (unsigned char) (rlen + 2);
		f[2] = (unsigned char) (code >> 8);
		f[3] = (unsigned char) (code & 0xff);
		memcpy(f + 4, c->close_reason, rlen);
		if (lws_write(wsi, f, rlen + 4, LWS_WRITE_RAW) < (int) (rlen + 4))
			return -1;
		c->close_sent = true;
		if (lws_partial_buffered(wsi))
		{
			/* lws sends the rest first, then calls again */
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	if (c->close_sent && !c->close_shut)
	{
		/*
		 * All of it is out: linger.  A client that answers with its close
		 * (WS_PEER_INITIATED_CLOSE) or closes ends it sooner.
		 */
		c->close_shut = true;
		c->linger_bytes = 0;
		lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, WS_LINGER_S);
	}
	return 0;
}

/* Payload of a connection the bridge is closing: discarded, and read only so far. */
static void
ws_linger_rx(struct ws_conn *c, size_t len)
{
	c->linger_bytes += len;
	if (c->close_shut && c->linger_bytes > WS_LINGER_READ_MAX && !c->rx_paused)
	{
		/* the client does not read us: stop spending reads on it until the deadline */
		lws_rx_flow_control(c->wsi, 0);
		c->rx_paused = true;
	}
}

/* The handshake: pick the endpoint, admit, and let it decide the rest. */
static int
ws_filter(struct lws *wsi, struct ws_session *s)
{
	const struct ws_endpoint *ep = NULL;
	struct ws_conn *c = NULL;
	char		path[64], peer[64];
	int			rc;

	if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
		return ws_refuse(wsi, 404, "not found");
	for (int i = 0; endpoints && endpoints[i]; i++)
		if (!strcmp(path, endpoints[i]->path))
			ep = endpoints[i];
	if (!ep)
		return ws_refuse(wsi, 404, "no WebSocket endpoint here");
	if (srv.draining)
		return ws_refuse(wsi, 503, "shutting down");
	if (!ep->own_budget && nshared >= srv.cfg.max_connections)
		return ws_refuse(wsi, 503, "too many connections");
	limits_client_addr(wsi, peer, sizeof(peer));
	if (!attempts_allow("ip", peer, srv.cfg.connects_per_minute_ip))
		return ws_refuse(wsi, 429, "too many connection attempts");
	if (limits_auth_blocked(peer))
	{
		/* M5: past --auth-fail-limit-ip, no credential is looked at (nor audited) */
		srv.m.auth_fail_limited++;
		return ws_refuse(wsi, 429, "too many refused credentials from this address");
	}
	rc = ep->filter(wsi, peer, &c);
	if (rc || !c)
		return rc ? rc : -1;
	c->ep = ep;
	s->conn = c;
	s->z.who = ep->what;
	return 0;
}

/* The one WebSocket protocol callback. */
int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			void *in, size_t len)
{
	struct ws_session *s = user;
	struct ws_conn *c = s ? s->conn : NULL;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			return ws_filter(wsi, s);

		case LWS_CALLBACK_ADD_HEADERS:
			if (c && srv.cfg.deflate)
				deflate_answer(wsi, &s->z, in);
			return 0;

		case LWS_CALLBACK_ESTABLISHED:
			if (!c)
				return -1;
			if (srv.cfg.deflate)
				deflate_established(wsi, &s->z);
			c->wsi = wsi;
			c->last_rx = now_us();
			limits_upgraded(wsi);	/* no request deadline for a WebSocket */
			c->next = conns;
			if (conns)
				conns->prev = c;
			conns = c;
			nconns++;
			nshared += !c->ep->own_budget;
			return c->ep->established(c);

		case LWS_CALLBACK_RECEIVE:
			if (!c || !c->wsi)
				return 0;
			if (c->close_code)
			{
				ws_linger_rx(c, len);
				return 0;
			}
			return ws_receive(wsi, c, in, len);

		case LWS_CALLBACK_SERVER_WRITEABLE:
			if (!c || !c->wsi)
				return 0;
			return ws_writeable(wsi, c);

		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			if (c && c->close_sent)
				return -1;		/* the answer to ours: done (lws would echo it) */
			if (c)
				c->close_sent = c->close_shut = true;	/* lws answers it */
			if (c && !c->close_code)
			{
				c->close_code = len >= 2 ?
					(((unsigned char *) in)[0] << 8 | ((unsigned char *) in)[1]) : 1005;
				if (c->close_code < 1000 || c->close_code > 4999)
					c->close_code = 1002;
				snprintf(c->close_reason, sizeof(c->close_reason), "%.*s",
						 len > 2 ? (int) (len - 2 < 60 ? len - 2 : 60) : 0,
						 len > 2 ? (char *) in + 2 : "");
			}
			return 0;

		case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:
			/*
			 * The upgrade failed after the filter accepted it (lws then
			 * drops the protocol and closes, and its WSI_DESTROY comes
			 * without the session): the connection never established is
			 * discarded here, or nothing would ever free it.
			 */
			if (s)
			{
				deflate_session_end(&s->z);
				if (c && !c->wsi)
				{
					s->conn = NULL;
					c->ep->discard(c);
				}
			}
			return 0;

		case LWS_CALLBACK_CLOSED:
			deflate_session_end(&s->z);
			if (c && !c->wsi)
			{
				/* accepted by the filter, never established (as above) */
				s->conn = NULL;
				c->ep->discard(c);
				return 0;
			}
			if (!c)
				return 0;
			if (c->prev)
				c->prev->next = c->next;
			else if (conns == c)
				conns = c->next;
			if (c->next)
				c->next->prev = c->prev;
			c->next = c->prev = NULL;
			nconns--;
			nshared -= !c->ep->own_budget;
			c->wsi = NULL;
			c->rx_paused = false;
			if (!c->close_code)
			{
				c->close_code = 1006;
				snprintf(c->close_reason, sizeof(c->close_reason), "connection lost");
			}
			outq_clear(&c->out);
			rx_free(c);
			s->conn = NULL;
			c->ep->closed(c);
			return 0;

		case LWS_CALLBACK_WSI_DESTROY:
			if (s)
			{
				deflate_session_end(&s->z);
				/* refused after the filter accepted: never established */
				if (c)
				{
					s->conn = NULL;
					c->ep->discard(c);
				}
			}
			return 0;

		default:
			return 0;
	}
}

/* deflate.c's view of a session: its deflate state once the filter accepted. */
static struct deflate_state *
session_deflate(struct lws *wsi)
{
	struct ws_session *s = lws_wsi_user(wsi);

	return s && s->conn ? &s->z : NULL;
}

/* deflate.c cannot go on with a connection's compressed stream. */
static void
session_refuse(struct lws *wsi, int code, const char *reason)
{
	struct ws_session *s = lws_wsi_user(wsi);

	if (s && s->conn)
		ws_close(s->conn, code, reason);
}
