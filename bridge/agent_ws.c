/*
 * agent_ws.c - the agent endpoint, /ws/agent: its handshake, its row for
 * ws.c, and the table of the messages agents send (DESIGN.md).
 *
 * Handshake: the agent id and bearer token are checked against the
 * bridge's copy of the live credentials (credentials.c) before the upgrade
 * is accepted (401 otherwise).  Each message is charged to the agent's
 * rate bucket, parsed, and dispatched by its type through the message
 * table; data frames go to ingest_batch.c, acks and status to the
 * extension.  Once a second the sweep closes agents silent longer than
 * --silence-timeout.  What a connection is and how it ends is agents.c's.
 */
#include "agent_ws.h"
#include "agent_commands.h"
#include "agents.h"
#include "db.h"
#include "ingest_batch.h"
#include "metrics.h"

#include <math.h>
#include <string.h>

static struct btimer sweep_sul;
static bool sweep_started;
static lws_usec_t minute_started;

/* ---------------------------------------------------------------- messages */

static void
ack_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && a->ws.wsi)
		agent_send_error(a, "invalid_command_ack",
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "command_ack failed", -1);
	/* the first ack of a command: its time from issue, for /metrics */
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1))
		metrics_command_acked(atof(PQgetvalue(res, 0, 1)));
	agent_release(a);
}

static void
status_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && a->ws.wsi)
		agent_send_error(a, "invalid_status",
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "status not stored", -1);
	/*
	 * record_status says how many frames the agent dropped from its full
	 * resend buffer since its previous report (to this bridge or another):
	 * counted in /metrics and logged, never silent.
	 */
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		long long	n = atoll(PQgetvalue(res, 0, 0));

		if (n > 0)
		{
			srv.m.agent_frames_dropped += (uint64_t) n;
			blog("warn", "agent_dropped", "agent %s reports %lld more frame(s) dropped from its full buffer",
				 a->agent_id, n);
		}
	}
	agent_release(a);
}

/* {"type":"command_ack","data":{"command_id","success","error"}} */
static void
handle_command_ack(struct agent *a, const char *text, size_t len, cJSON *data)
{
	cJSON	   *id = cJSON_GetObjectItemCaseSensitive(data, "command_id");
	cJSON	   *ok = cJSON_GetObjectItemCaseSensitive(data, "success");
	cJSON	   *err = cJSON_GetObjectItemCaseSensitive(data, "error");
	struct db_query *q;

	if (!cJSON_IsObject(data))
	{
		agent_send_error(a, "invalid_message", "data: missing or not an object", -1);
		return;
	}
	if (!cJSON_IsString(id))
	{
		agent_send_error(a, "invalid_message", "data.command_id: missing or not a string", -1);
		return;
	}
	if (!cJSON_IsBool(ok))
	{
		agent_send_error(a, "invalid_message", "data.success: missing or not a boolean", -1);
		return;
	}
	if (err && !cJSON_IsNull(err) && !cJSON_IsString(err))
	{
		agent_send_error(a, "invalid_message", "data.error: not a string or null", -1);
		return;
	}
	q = db_query_new(LANE_GENERAL,
					 /*
					  * c is the row as before this statement: queued or
					  * sent means this is its first result
					  */
					 "SELECT s, CASE WHEN s = 'acked' AND c.status IN ('queued', 'sent') "
					 "THEN extract(epoch FROM now() - c.created_at) END "
					 "FROM pankha.ack_command($1, $2::uuid, $3::boolean, $4) s "
					 "LEFT JOIN pankha.commands c ON c.command_id = $2::uuid AND c.agent_id = $1",
					 ack_done, a);
	if (q)
		db_query_key(q, a->agent_id);	/* after what its connection did before */
	if (!q || db_query_param(q, a->agent_id, strlen(a->agent_id)) ||
		db_query_param(q, id->valuestring, strlen(id->valuestring)) ||
		db_query_param(q, cJSON_IsTrue(ok) ? "true" : "false", cJSON_IsTrue(ok) ? 4 : 5) ||
		db_query_param(q, cJSON_IsString(err) ? err->valuestring : NULL,
					   cJSON_IsString(err) ? strlen(err->valuestring) : 0))
	{
		if (q)
			db_query_free(q);
		agent_send_error(a, "internal_error", "out of memory; send it again", -1);
		return;
	}
	if (cJSON_IsTrue(ok))
		srv.m.commands_acked++;
	else
		srv.m.commands_failed++;
	a->refs++;
	db_submit(q);
}

/* {"type":"status","data":{...}} */
static void
handle_status(struct agent *a, const char *raw, size_t len, cJSON *data)
{
	struct db_query *q;
	char	   *text;

	if (!cJSON_IsObject(data))
	{
		agent_send_error(a, "invalid_message", "data: missing or not an object", -1);
		return;
	}
	text = cJSON_PrintUnformatted(data);
	q = db_query_new(LANE_GENERAL, "SELECT pankha.record_status($1, $2::jsonb)",
					 status_done, a);
	if (q)
		db_query_key(q, a->agent_id);
	if (!text || !q || db_query_param(q, a->agent_id, strlen(a->agent_id)) ||
		db_query_param(q, text, strlen(text)))
	{
		if (q)
			db_query_free(q);
		free(text);
		agent_send_error(a, "internal_error", "out of memory; send it again", -1);
		return;
	}
	free(text);
	a->refs++;
	db_submit(q);
}

/* {"type":"data","data":{frame}}: held for the next ingest batch. */
static void
handle_data(struct agent *a, const char *text, size_t len, cJSON *data)
{
	cJSON	   *seq = cJSON_GetObjectItemCaseSensitive(data, "seq");
	int64_t		s = -1;

	if (!cJSON_IsObject(data))
		agent_send_error(a, "invalid_frame", "data: missing or not an object", -1);
	else if (seq && !cJSON_IsNull(seq) &&
			 (!cJSON_IsNumber(seq) || seq->valuedouble < 0 ||
			  seq->valuedouble > 9007199254740991.0 ||
			  floor(seq->valuedouble) != seq->valuedouble))
		agent_send_error(a, "invalid_frame", "data.seq: not a non-negative integer", -1);
	else
	{
		if (cJSON_IsNumber(seq))
			s = (int64_t) seq->valuedouble;
		ingest_queue_frame(a, text, len, s, data);
	}
}

/* {"type":"ping"} */
static void
handle_ping(struct agent *a, const char *text, size_t len, cJSON *data)
{
	metrics_note_ping(true);
	agent_send(a, "{\"type\":\"pong\"}", 15, false);
}

/*
 * The messages an agent may send: a new one is a row.  The handler gets
 * the message as received, and its "data" member (maybe NULL).
 */
static const struct
{
	const char *type;
	void		(*handle) (struct agent *a, const char *text, size_t len, cJSON *data);
}			agent_messages[] = {
	{"data", handle_data},
	{"ping", handle_ping},
	{"command_ack", handle_command_ack},
	{"status", handle_status},
};

/*
 * Whether a message over the rate limit is a data frame.  Parsed only
 * then, and only to its "type"; whatever does not parse is not a frame.
 */
static bool
is_data_message(const char *text, size_t len)
{
	cJSON	   *root = json_parse_transient(text, len);
	const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "type"));
	bool		data = t && !strcmp(t, "data");

	cJSON_Delete(root);
	return data;
}

/* Charge one message to the agent's rate bucket; false when over. */
static bool
rate_allow(struct agent *a)
{
	lws_usec_t	now = now_us();
	double		rate = srv.cfg.rate_per_minute;

	if (rate <= 0)
		return true;
	a->tokens += (double) (now - a->tokens_at) * rate / (60.0 * LWS_US_PER_SEC);
	if (a->tokens > rate)
		a->tokens = rate;
	a->tokens_at = now;
	if (a->tokens < 1.0)
		return false;
	a->tokens -= 1.0;
	return true;
}

/* One complete message from an agent. */
static void
handle_message(struct agent *a, const char *text, size_t len)
{
	cJSON	   *root, *data;
	const char *t;

	a->frames_in++;
	a->bytes_in += len;
	srv.m.bytes_in += len;
	if (!rate_allow(a))
	{
		int			limit = srv.cfg.rate_per_minute / 10 < 5 ? 5 : srv.cfg.rate_per_minute / 10;

		if (is_data_message(text, len))
		{
			/* a dropped frame must not be covered by a later ack (M3) */
			srv.m.closed_rate_limit++;
			ingest_refuse(a, -1, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate_limited",
						  "rate limit exceeded");
			return;
		}
		agent_send_error(a, "rate_limited", "too many messages per minute; this one was dropped", -1);
		if (++a->violations > limit)
		{
			srv.m.closed_rate_limit++;
			agent_close(a, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded");
		}
		return;
	}
	root = json_parse_transient(text, len);
	if (!root || !cJSON_IsObject(root))
	{
		agent_send_error(a, "malformed_json", root ? "message is not a JSON object" :
				   "message is not valid JSON", -1);
		cJSON_Delete(root);
		return;
	}
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "type"));
	if (!t)
	{
		agent_send_error(a, "invalid_message", "type: missing or not a string", -1);
		cJSON_Delete(root);
		return;
	}
	for (size_t i = 0; i < sizeof(agent_messages) / sizeof(agent_messages[0]); i++)
		if (!strcmp(t, agent_messages[i].type))
		{
			agent_messages[i].handle(a, text, len, data);
			cJSON_Delete(root);
			return;
		}
	{
		struct sbuf m = {0};

		sbuf_printf(&m, "unknown message type \"%.64s\"", t);
		agent_send_error(a, "unknown_type", m.failed ? "unknown message type" : m.data, -1);
		sbuf_free(&m);
	}
	cJSON_Delete(root);
}

/* ---------------------------------------------------------------- sweep */

/* Once a second: silence timeouts; once a minute: reset the limiters. */
static void
sweep_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	now = now_us();
	lws_usec_t	silence = (lws_usec_t) srv.cfg.silence_timeout_s * LWS_US_PER_SEC;

	for (struct agent *a = agents_first(); a; a = a->all_next)
	{
		/* while we do not read from it, an agent cannot be heard */
		if (a->ws.rx_paused)
			a->ws.last_rx = now;
		if (a->ws.wsi && !a->ws.close_code && silence > 0 && now - a->ws.last_rx > silence)
		{
			srv.m.closed_silent++;
			agent_close(a, 4002, "silent too long");
		}
	}
	if (now - minute_started >= 60 * LWS_US_PER_SEC)
	{
		minute_started = now;
		/* (the limiters' counts start again in admission.c's sweep) */
		for (struct agent *a = agents_first(); a; a = a->all_next)
			a->violations = 0;
	}
	timer_schedule(&sweep_sul, sweep_cb, LWS_US_PER_SEC);
}

/* ---------------------------------------------------------------- lws */

/*
 * Decide on an upgrade to /ws/agent once ws.c admitted it: 0 accepts
 * (and sets *conn), other values refuse after an HTTP status was sent.
 */
static int
agent_filter(struct lws *wsi, const char *peer, struct ws_conn **conn)
{
	char		id[128], buf[160];
	const char *arg;
	char	   *token = NULL;
	struct cred_grant grant;
	enum cred_verdict verdict;
	struct agent *a;
	int			n;

	id[0] = '\0';
	arg = lws_get_urlarg_by_name(wsi, "agent_id=", buf, sizeof(buf));
	if (arg)
		snprintf(id, sizeof(id), "%s", arg);
	else
	{
		n = lws_hdr_custom_length(wsi, "x-agent-id:", 11);
		if (n <= 0 || n >= (int) sizeof(id) ||
			lws_hdr_custom_copy(wsi, id, sizeof(id), "x-agent-id:", 11) < 0)
			id[0] = '\0';
	}
	if (!agent_id_valid(id))
		return ws_refuse(wsi, 401, "agent id missing or invalid");
	if (!attempts_allow("agent", id, srv.cfg.connects_per_minute_agent))
		return ws_refuse(wsi, 429, "too many connection attempts");

	if (http_bearer_token(wsi, &token) < 0)
		return ws_refuse(wsi, 500, "out of memory");
	verdict = creds_check(CRED_AGENT, id, token, peer, &grant);
	free(token);
	if (verdict == CRED_UNAVAILABLE)
		return ws_refuse(wsi, 503, "database unavailable");
	if (verdict == CRED_REFUSED)
	{
		blog("info", "agent_refused", "agent %s from %s: bad credentials", id, peer);
		srv.m.handshakes_refused++;
		return ws_refuse(wsi, 401, "invalid agent credentials");
	}

	a = agent_new(id, grant.selector, peer);
	if (!a)
		return ws_refuse(wsi, 500, "out of memory");
	memcpy(a->digest, grant.digest, sizeof(a->digest));
	*conn = &a->ws;
	return 0;
}

/* The upgrade completed: say hello, then the connection is agents.c's. */
static int
agent_established(struct ws_conn *c)
{
	struct agent *a = lws_container_of(c, struct agent, ws);
	cJSON	   *msg, *data;

	if (!sweep_started)
	{
		sweep_started = true;
		minute_started = now_us();
		timer_schedule(&sweep_sul, sweep_cb, LWS_US_PER_SEC);
	}
	a->tokens_at = now_us();
	a->tokens = srv.cfg.rate_per_minute;
	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", "connected");
	data = cJSON_AddObjectToObject(msg, "data");
	cJSON_AddStringToObject(data, "agent_id", a->agent_id);
	cJSON_AddStringToObject(data, "bridge", srv.bridge_id);
	cJSON_AddNumberToObject(data, "max_message", (double) srv.cfg.max_message);
	cJSON_AddNumberToObject(data, "rate_per_minute", srv.cfg.rate_per_minute);
	agent_send_json(a, msg, false);
	return agent_open(a);
}

/* One complete message from an agent. */
static void
agent_message(struct ws_conn *c, const char *text, size_t len, bool binary)
{
	struct agent *a = lws_container_of(c, struct agent, ws);

	if (binary)
		agent_send_error(a, "invalid_message", "binary frames are not accepted", -1);
	else
		handle_message(a, text, len);
}

/* The socket closed. */
static void
agent_closed(struct ws_conn *c)
{
	metrics_note_close(true, c->close_code);
	agent_gone(lws_container_of(c, struct agent, ws));
}

/* Accepted by the filter but never established. */
static void
agent_discard(struct ws_conn *c)
{
	agent_release(lws_container_of(c, struct agent, ws));
}

const struct ws_endpoint agent_ws_endpoint = {
	.path = "/ws/agent",
	.what = "an agent",
	.slow_reason = "not reading",
	.filter = agent_filter,
	.established = agent_established,
	.message = agent_message,
	.closed = agent_closed,
	.discard = agent_discard,
};

