/*
 * http_api.c - the HTTP side: probes, metrics, agent enrollment and sync,
 * and the JSON endpoints of the dashboard.
 *
 * Each request lives in a heap struct (it may outlive its socket while a
 * query runs).  Bodies are collected up to --max-body, gunzipped when sent
 * with Content-Encoding: gzip, and answered from the query's callback by
 * asking for a WRITEABLE callback.  Errors are JSON {"error": message}.
 */
#include "http_api.h"
#include "agents.h"
#include "credentials.h"
#include "db.h"
#include "ingest_batch.h"
#include "tls.h"
#include "ui_ws.h"

#include <malloc.h>
#include <string.h>
#include <zlib.h>

/* One HTTP request. */
struct http_req
{
	struct lws *wsi;			/* NULL once the socket closed */
	int			refs;			/* socket + query */
	bool		post;
	char		path[256];
	char		peer[64];
	char	   *token;			/* bearer token or NULL */
	bool		gzip;			/* Content-Encoding: gzip */
	unsigned char *body;
	size_t		body_len;
	bool		body_too_big;
	char		role[16];		/* dashboard role once authenticated */
	char		user[80];		/* dashboard user once authenticated */
	char	   *args[4];		/* series, from, to, resolution (query string) */
	int			null_status;	/* status when the query returns NULL */
	const char *null_message;	/* and its message */
	int			status;			/* response */
	const char *ctype;
	unsigned char *resp;		/* LWS_PRE headroom, then resp_len bytes */
	size_t		resp_len;
	bool		answered;
};

/* The pss of the http protocol. */
struct http_session
{
	struct http_req *req;
};

static void route(struct http_req *r);

static void
req_release(struct http_req *r)
{
	if (--r->refs > 0)
		return;
	free(r->token);
	free(r->body);
	free(r->resp);
	for (int i = 0; i < 4; i++)
		free(r->args[i]);
	free(r);
}

/* Set the response and ask to write it. */
static void
respond(struct http_req *r, int status, const char *ctype, const char *body, size_t len)
{
	if (r->answered)
		return;
	r->answered = true;
	r->status = status;
	r->ctype = ctype;
	r->resp = malloc(LWS_PRE + len + 1);
	if (r->resp)
	{
		memcpy(r->resp + LWS_PRE, body, len);
		r->resp_len = len;
	}
	else
		r->status = 500;
	if (r->wsi)
		lws_callback_on_writable(r->wsi);
}

static void
respond_json(struct http_req *r, int status, const char *json)
{
	respond(r, status, "application/json", json, strlen(json));
}

/* {"error": message} with status. */
static void
respond_error(struct http_req *r, int status, const char *message)
{
	cJSON	   *o = cJSON_CreateObject();
	char	   *text;

	cJSON_AddStringToObject(o, "error", message);
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	respond_json(r, status, text ? text : "{\"error\":\"out of memory\"}");
	free(text);
}

/* HTTP status for a failed query: the client's fault or ours. */
static int
status_for(PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (!state)
		return 503;
	if (!strncmp(state, "28", 2))
		return 401;
	if (!strncmp(state, "42501", 5))
		return 403;
	if (!strcmp(state, "P0002") || !strcmp(state, "02000"))
		return 404;
	if (db_error_is_data(res))
		return 400;
	return 500;
}

/* Answer with the query's one text value, or its error. */
static void
json_result_done(struct db_query *q, PGresult *res)
{
	struct http_req *r = q->arg;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 0))
		respond_json(r, 200, PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		respond_error(r, r->null_status ? r->null_status : 404,
					  r->null_message ? r->null_message : "not found");
	else
	{
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		respond_error(r, status_for(res), m ? m : "database error");
	}
	req_release(r);
}

/* Run sql with up to DB_MAX_PARAMS text parameters and answer its JSON. */
static void
run_json(struct http_req *r, const char *sql, int n, const char *const *params)
{
	struct db_query *q = db_query_new(LANE_GENERAL, sql, json_result_done, r);

	if (!q)
	{
		respond_error(r, 500, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		if (db_query_param(q, params[i], params[i] ? strlen(params[i]) : 0))
		{
			db_query_free(q);
			respond_error(r, 500, "out of memory");
			return;
		}
	r->refs++;
	db_submit(q);
}

/* ---------------------------------------------------------------- metrics */

static void
metric(struct sbuf *b, const char *name, const char *type, const char *help,
	   const char *labels, double v)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help, name, type,
				name, labels ? labels : "", v);
}

static void
metric_histogram(struct sbuf *b, const struct histogram *h)
{
	uint64_t	cum = 0;

	sbuf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
	for (int i = 0; i < h->nbounds; i++)
	{
		cum += h->counts[i];
		sbuf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i],
					(unsigned long long) cum);
	}
	cum += h->counts[h->nbounds];
	sbuf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
				h->name, (unsigned long long) cum, h->name, h->sum, h->name,
				(unsigned long long) h->count);
}

static void
serve_metrics(struct http_req *r)
{
	struct sbuf b = {0};
	const struct metrics *m = &srv.m;

	sbuf_printf(&b, "# HELP pankha_bridge_connections Open WebSocket connections by kind.\n"
				"# TYPE pankha_bridge_connections gauge\n"
				"pankha_bridge_connections{kind=\"agent\"} %d\n"
				"pankha_bridge_connections{kind=\"dashboard\"} %d\n",
				agents_count(), ui_count());
	metric(&b, "pankha_bridge_frames_received_total", "counter", "Data frames read from agents.", NULL, m->frames_received);
	metric(&b, "pankha_bridge_frames_committed_total", "counter", "Data frames committed (stored or already stored).", NULL, m->frames_committed);
	metric(&b, "pankha_bridge_frames_rejected_total", "counter", "Data frames the extension rejected.", NULL, m->frames_rejected);
	metric(&b, "pankha_bridge_frames_held", "gauge", "Data frames waiting for their commit.", NULL, ingest_held());
	metric(&b, "pankha_bridge_messages_invalid_total", "counter", "Malformed or unknown messages answered with an error.", NULL, m->messages_invalid);
	metric(&b, "pankha_bridge_commands_pushed_total", "counter", "Commands written to agents.", NULL, m->commands_pushed);
	metric(&b, "pankha_bridge_commands_acked_total", "counter", "Commands agents acknowledged as done.", NULL, m->commands_acked);
	metric(&b, "pankha_bridge_commands_failed_total", "counter", "Commands agents reported as failed.", NULL, m->commands_failed);
	metric(&b, "pankha_bridge_bytes_received_total", "counter", "WebSocket payload bytes received.", NULL, m->bytes_in);
	metric(&b, "pankha_bridge_bytes_sent_total", "counter", "WebSocket payload bytes sent.", NULL, m->bytes_out);
	metric(&b, "pankha_bridge_db_reconnects_total", "counter", "Database connections re-established.", NULL, m->db_reconnects);
	metric(&b, "pankha_bridge_db_ready", "gauge", "1 when every database connection is up.", NULL, db_ready());
	metric(&b, "pankha_bridge_handshakes_refused_total", "counter", "WebSocket handshakes refused for credentials.", NULL, m->handshakes_refused);
	metric(&b, "pankha_bridge_closed_rate_limit_total", "counter", "Agents closed for exceeding the message rate.", NULL, m->closed_rate_limit);
	metric(&b, "pankha_bridge_closed_too_big_total", "counter", "Connections closed for oversize messages.", NULL, m->closed_too_big);
	metric(&b, "pankha_bridge_closed_silent_total", "counter", "Agents closed for silence.", NULL, m->closed_silent);
	metric(&b, "pankha_bridge_dashboards_dropped_total", "counter", "Dashboards dropped for not reading.", NULL, m->ui_dropped_slow);
	metric(&b, "pankha_bridge_read_pauses_total", "counter", "Times reading paused because the database fell behind.", NULL, m->read_pauses);
	metric(&b, "pankha_bridge_credentials", "gauge", "Live agent and dashboard tokens the bridge checks handshakes against.", NULL, creds_count());
	metric(&b, "pankha_bridge_credentials_ready", "gauge", "1 when the credentials are loaded and handshakes can be answered.", NULL, creds_ready());
	metric(&b, "pankha_bridge_credential_loads_total", "counter", "Complete loads of the credentials (start, database reconnects).", NULL, m->credential_loads);
	metric(&b, "pankha_bridge_credential_refreshes_total", "counter", "Reloads of credentials a NOTIFY named.", NULL, m->credential_refreshes);
	{
		/* where RSS goes: allocated bytes, and free ones the heap still holds */
		struct mallinfo2 mi = mallinfo2();

		sbuf_printf(&b, "# HELP pankha_bridge_heap_bytes Heap bytes allocated and held free (glibc mallinfo2).\n"
					"# TYPE pankha_bridge_heap_bytes gauge\n"
					"pankha_bridge_heap_bytes{state=\"in_use\"} %zu\n"
					"pankha_bridge_heap_bytes{state=\"free\"} %zu\n",
					mi.uordblks + mi.hblkhd, mi.fordblks);
	}
	metric(&b, "pankha_bridge_deflate_parked", "gauge", "Connections whose inflater is freed between messages, only its window kept.", NULL, (double) m->deflate_parked);
	metric_histogram(&b, &m->batch_size);
	metric_histogram(&b, &m->commit_seconds);
	metric_histogram(&b, &m->command_seconds);
	if (b.failed)
		respond_error(r, 500, "out of memory");
	else
		respond(r, 200, "text/plain; version=0.0.4", b.data, b.len);
	sbuf_free(&b);
}

/* ---------------------------------------------------------------- body */

/* Gunzip the body in place, refusing more than --max-body; -1 on error. */
static int
gunzip_body(struct http_req *r, const char **err)
{
	z_stream	z;
	unsigned char *out = NULL;
	size_t		cap = 0, len = 0;
	int			rc;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
	{
		*err = "cannot inflate";
		return -1;
	}
	z.next_in = r->body;
	z.avail_in = (uInt) r->body_len;
	do
	{
		if (len == cap)
		{
			size_t		ncap = cap ? cap * 2 : 4096;
			unsigned char *n;

			if (ncap > srv.cfg.max_body + 1)
				ncap = srv.cfg.max_body + 1;
			if (ncap <= len)
			{
				inflateEnd(&z);
				free(out);
				*err = "request body too large once inflated";
				return -2;
			}
			n = realloc(out, ncap);
			if (!n)
			{
				inflateEnd(&z);
				free(out);
				*err = "out of memory";
				return -1;
			}
			out = n;
			cap = ncap;
		}
		z.next_out = out + len;
		z.avail_out = (uInt) (cap - len);
		rc = inflate(&z, Z_NO_FLUSH);
		len = cap - z.avail_out;
		if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && z.avail_out == 0))
		{
			inflateEnd(&z);
			free(out);
			*err = "request body is not valid gzip";
			return -1;
		}
	} while (rc != Z_STREAM_END);
	inflateEnd(&z);
	free(r->body);
	r->body = out;
	r->body_len = len;
	return 0;
}

/* ---------------------------------------------------------------- routes */

static void
serve_register(struct http_req *r, cJSON *body)
{
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "agent_id"));
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "name"));
	const char *host = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "hostname"));
	cJSON	   *caps = cJSON_GetObjectItemCaseSensitive(body, "capabilities");
	char	   *capstext;
	const char *params[6];

	if (!r->token)
	{
		respond_error(r, 401, "enrollment key missing (Authorization: Bearer <key>)");
		return;
	}
	if (!id)
	{
		respond_error(r, 400, "agent_id: missing or not a string");
		return;
	}
	if (caps && !cJSON_IsObject(caps))
	{
		respond_error(r, 400, "capabilities: not an object");
		return;
	}
	capstext = caps ? cJSON_PrintUnformatted(caps) : strdup("{}");
	if (!capstext)
	{
		respond_error(r, 500, "out of memory");
		return;
	}
	params[0] = r->token;
	params[1] = id;
	params[2] = name ? name : id;
	params[3] = host;
	params[4] = capstext;
	params[5] = r->peer;
	r->null_status = 401;
	r->null_message = "invalid enrollment key";
	run_json(r, "SELECT json_build_object('agent_id', $2::text, 'token', t)::text"
			 " FROM pankha.try_enroll_agent($1, $2, $3, $4, $5::jsonb, $6) AS t"
			 " WHERE t IS NOT NULL", 6, params);
	free(capstext);
}

static void
serve_sync(struct http_req *r, cJSON *body)
{
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "agent_id"));
	cJSON	   *frames = cJSON_GetObjectItemCaseSensitive(body, "frames");
	cJSON	   *acks = cJSON_GetObjectItemCaseSensitive(body, "acks");
	char	   *ftext, *atext;
	const char *params[5];

	if (!r->token)
	{
		respond_error(r, 401, "agent token missing (Authorization: Bearer <token>)");
		return;
	}
	if (!id)
	{
		respond_error(r, 400, "agent_id: missing or not a string");
		return;
	}
	if ((frames && !cJSON_IsArray(frames)) || (acks && !cJSON_IsArray(acks)))
	{
		respond_error(r, 400, "frames and acks must be arrays");
		return;
	}
	ftext = frames ? cJSON_PrintUnformatted(frames) : strdup("[]");
	atext = acks ? cJSON_PrintUnformatted(acks) : strdup("[]");
	if (!ftext || !atext)
	{
		free(ftext);
		free(atext);
		respond_error(r, 500, "out of memory");
		return;
	}
	params[0] = id;
	params[1] = r->token;
	params[2] = r->peer;
	params[3] = ftext;
	params[4] = atext;
	r->null_status = 401;
	r->null_message = "invalid agent credentials";
	run_json(r, "SELECT pankha.agent_sync($1, $2, $3, $4::jsonb, $5::jsonb)::text", 5, params);
	free(ftext);
	free(atext);
}

/* Does role meet need (viewer < operator < admin)? */
static bool
role_at_least(const char *role, const char *need)
{
	static const char *order[] = {"viewer", "operator", "admin"};
	int			have = -1, want = 0;

	for (int i = 0; i < 3; i++)
	{
		if (!strcmp(role, order[i]))
			have = i;
		if (!strcmp(need, order[i]))
			want = i;
	}
	return have >= want;
}

/* The dashboard routes, once the token's role is known. */
static void
serve_dashboard(struct http_req *r, cJSON *body)
{
	char		id[80];
	const char *rest;
	const char *params[6];

	if (!strcmp(r->path, "/api/v1/agents") && !r->post)
	{
		run_json(r,
				 "SELECT coalesce(json_agg(x ORDER BY x.agent_id), '[]')::text FROM ("
				 " SELECT a.agent_id, a.name, a.hostname, a.status, a.last_seen,"
				 "  (SELECT count(*) FROM pankha.sensors s WHERE s.agent_id = a.agent_id) AS sensors,"
				 "  (SELECT count(*) FROM pankha.fans f WHERE f.agent_id = a.agent_id) AS fans"
				 " FROM pankha.agents a) x", 0, NULL);
		return;
	}
	if (!strcmp(r->path, "/api/v1/settings") && r->post)
	{
		const char *scope = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "scope"));
		const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "key"));
		cJSON	   *value = cJSON_GetObjectItemCaseSensitive(body, "value");
		char	   *vtext;

		if (!role_at_least(r->role, "operator"))
		{
			respond_error(r, 403, "viewers may not change settings");
			return;
		}
		if (!scope || !key || !value)
		{
			respond_error(r, 400, "scope, key and value are required (scope: global, group:<name> or agent:<id>)");
			return;
		}
		vtext = cJSON_PrintUnformatted(value);
		if (!vtext)
		{
			respond_error(r, 500, "out of memory");
			return;
		}
		params[0] = scope;
		params[1] = key;
		params[2] = vtext;
		params[3] = r->user;
		run_json(r, "SELECT json_build_object('agents_updated', "
				 "pankha.set_setting($1, $2, $3::jsonb, $4))::text", 4, params);
		free(vtext);
		return;
	}
	if (!strcmp(r->path, "/api/v1/alerts") && r->post)
	{
		char	   *text;

		if (!role_at_least(r->role, "admin"))
		{
			respond_error(r, 403, "only admins may post alerts");
			return;
		}
		if (!cJSON_IsObject(body))
		{
			respond_error(r, 400, "body must be a JSON object");
			return;
		}
		text = cJSON_PrintUnformatted(body);
		params[0] = text;
		if (text && strlen(text) > 7900)
			respond_error(r, 400, "alert too large (at most 7900 bytes)");
		else if (text)
			run_json(r, "SELECT json_build_object('sent', true, 'at', now())::text"
					 " FROM pg_notify('pankha_alert', $1)", 1, params);
		else
			respond_error(r, 500, "out of memory");
		free(text);
		return;
	}
	if (strncmp(r->path, "/api/v1/agents/", 15))
	{
		respond_error(r, 404, "no such endpoint");
		return;
	}
	rest = strchr(r->path + 15, '/');
	if (!rest || rest == r->path + 15 || (size_t) (rest - (r->path + 15)) >= sizeof(id))
	{
		respond_error(r, 404, "no such endpoint");
		return;
	}
	memcpy(id, r->path + 15, rest - (r->path + 15));
	id[rest - (r->path + 15)] = '\0';
	params[0] = id;

	if (!strcmp(rest, "/commands") && r->post)
	{
		const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "command_type"));
		cJSON	   *p = cJSON_GetObjectItemCaseSensitive(body, "parameters");
		const char *prio = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "priority"));
		cJSON	   *ttl = cJSON_GetObjectItemCaseSensitive(body, "ttl_seconds");
		char	   *ptext;
		char		ttltext[32];

		if (!role_at_least(r->role, "operator"))
		{
			respond_error(r, 403, "viewers may not send commands");
			return;
		}
		if (!type)
		{
			respond_error(r, 400, "command_type: missing or not a string");
			return;
		}
		if (p && !cJSON_IsObject(p))
		{
			respond_error(r, 400, "parameters: not an object");
			return;
		}
		if (ttl && (!cJSON_IsNumber(ttl) || ttl->valuedouble <= 0))
		{
			respond_error(r, 400, "ttl_seconds: not a positive number");
			return;
		}
		snprintf(ttltext, sizeof(ttltext), "%d seconds", ttl ? (int) ttl->valuedouble : 300);
		ptext = p ? cJSON_PrintUnformatted(p) : strdup("{}");
		if (!ptext)
		{
			respond_error(r, 500, "out of memory");
			return;
		}
		params[1] = type;
		params[2] = ptext;
		params[3] = prio ? prio : "normal";
		params[4] = ttltext;
		params[5] = r->user;
		run_json(r, "SELECT json_build_object('command_id', "
				 "pankha.send_command($1, $2, $3::jsonb, $4, $5::interval, $6))::text", 6, params);
		free(ptext);
		return;
	}
	if (!strcmp(rest, "/latest") && !r->post)
	{
		r->null_status = 404;
		r->null_message = "no frame from this agent yet";
		run_json(r, "SELECT row_to_json(l)::text FROM pankha.latest l WHERE l.agent_id = $1", 1, params);
		return;
	}
	if (!strcmp(rest, "/history") && !r->post)
	{
		if (!r->args[0])
		{
			respond_error(r, 400, "series is required (a sensor id, fan id or health metric)");
			return;
		}
		params[1] = r->args[0];
		params[2] = r->args[1];
		params[3] = r->args[2];
		params[4] = r->args[3];
		run_json(r, "SELECT coalesce(json_agg(h ORDER BY h.bucket), '[]')::text FROM pankha.history($1, $2, "
				 "coalesce($3::timestamptz, now() - interval '1 hour'), coalesce($4::timestamptz, now()), "
				 "$5::interval) h", 5, params);
		return;
	}
	if (!strcmp(rest, "/settings") && !r->post)
	{
		run_json(r, "SELECT pankha.effective_settings($1)::text", 1, params);
		return;
	}
	respond_error(r, 404, "no such endpoint");
}

static void
ui_auth_done(struct db_query *q, PGresult *res)
{
	struct http_req *r = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		respond_error(r, status_for(res), m ? m : "database error");
	}
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		respond_error(r, 401, "invalid dashboard token");
	else
	{
		cJSON	   *body = NULL;

		snprintf(r->role, sizeof(r->role), "%s", PQgetvalue(res, 0, 0));
		snprintf(r->user, sizeof(r->user), "%s", PQgetvalue(res, 0, 1));
		if (r->post)
			body = cJSON_ParseWithLength((const char *) r->body, r->body_len);
		if (r->post && !body)
			respond_error(r, 400, "body is not valid JSON");
		else
			serve_dashboard(r, body);
		cJSON_Delete(body);
	}
	req_release(r);
}

/* Dispatch a complete request. */
static void
route(struct http_req *r)
{
	cJSON	   *body = NULL;

	if (!strcmp(r->path, "/healthz"))
	{
		respond_json(r, 200, "{\"status\":\"ok\"}");
		return;
	}
	if (!strcmp(r->path, "/readyz"))
	{
		if (creds_ready() && !srv.draining)
			respond_json(r, 200, "{\"ready\":true}");
		else
			respond_json(r, 503, srv.draining ?
						 "{\"ready\":false,\"reason\":\"shutting down\"}" :
						 db_ready() ?
						 "{\"ready\":false,\"reason\":\"loading credentials\"}" :
						 "{\"ready\":false,\"reason\":\"database unavailable\"}");
		return;
	}
	if (!strcmp(r->path, "/metrics"))
	{
		serve_metrics(r);
		return;
	}
	if (strncmp(r->path, "/api/", 5))
	{
		respond_error(r, 404, "not found");
		return;
	}
	if (r->body_too_big)
	{
		respond_error(r, 413, "request body too large");
		return;
	}
	if (r->gzip && r->body_len)
	{
		const char *err = NULL;
		int			rc = gunzip_body(r, &err);

		if (rc)
		{
			respond_error(r, rc == -2 ? 413 : 400, err);
			return;
		}
	}
	if (!db_ready())
	{
		respond_error(r, 503, "database unavailable");
		return;
	}
	if (!strcmp(r->path, "/api/v1/agents/register") || !strcmp(r->path, "/api/v1/agents/sync"))
	{
		if (!r->post)
		{
			respond_error(r, 405, "use POST");
			return;
		}
		body = cJSON_ParseWithLength((const char *) r->body, r->body_len);
		if (!cJSON_IsObject(body))
			respond_error(r, 400, "body is not a JSON object");
		else if (!strcmp(r->path, "/api/v1/agents/register"))
			serve_register(r, body);
		else
			serve_sync(r, body);
		cJSON_Delete(body);
		return;
	}
	if (!r->token)
	{
		respond_error(r, 401, "dashboard token missing (Authorization: Bearer <token>)");
		return;
	}
	{
		struct db_query *q = db_query_new(LANE_GENERAL,
										  "SELECT role, user_name FROM pankha.authenticate_ui($1, $2)",
										  ui_auth_done, r);

		if (!q || db_query_param(q, r->token, strlen(r->token)) ||
			db_query_param(q, r->peer, strlen(r->peer)))
		{
			if (q)
				db_query_free(q);
			respond_error(r, 500, "out of memory");
			return;
		}
		r->refs++;
		db_submit(q);
	}
}

/* The http protocol callback. */
int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len)
{
	struct http_session *s = user;
	struct http_req *r = s ? s->req : NULL;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			{
				char		enc[16];
				int			n;

				r = calloc(1, sizeof(*r));
				if (!r)
					return -1;
				r->refs = 1;
				r->wsi = wsi;
				s->req = r;
				r->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
				n = lws_hdr_copy(wsi, r->path, sizeof(r->path),
								 r->post ? WSI_TOKEN_POST_URI : WSI_TOKEN_GET_URI);
				if (n < 0)
					r->path[0] = '\0';
				lws_get_peer_simple(wsi, r->peer, sizeof(r->peer));
				if (http_bearer_token(wsi, &r->token) < 0)
					return -1;
				{
					static const char *const names[4] = {"series=", "from=", "to=", "resolution="};
					int			alen = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
					char	   *abuf = alen > 0 ? malloc((size_t) alen + 1) : NULL;

					for (int i = 0; abuf && i < 4; i++)
					{
						const char *v = lws_get_urlarg_by_name(wsi, names[i], abuf, alen + 1);

						if (v && !(r->args[i] = strdup(v)))
						{
							free(abuf);
							return -1;
						}
					}
					free(abuf);
				}
				if (lws_hdr_copy(wsi, enc, sizeof(enc), WSI_TOKEN_HTTP_CONTENT_ENCODING) > 0 &&
					!strcasecmp(enc, "gzip"))
					r->gzip = true;
				if (!r->post)
					route(r);
				/* POST: wait for the body */
				return 0;
			}
		case LWS_CALLBACK_HTTP_BODY:
			if (!r)
				return -1;
			if (r->body_too_big || r->body_len + len > srv.cfg.max_body)
			{
				r->body_too_big = true;
				break;
			}
			{
				unsigned char *n = realloc(r->body, r->body_len + len + 1);

				if (!n)
					return -1;
				r->body = n;
				memcpy(r->body + r->body_len, in, len);
				r->body_len += len;
			}
			break;
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			if (r)
				route(r);
			return 0;
		case LWS_CALLBACK_HTTP_WRITEABLE:
			{
				unsigned char hdr[LWS_PRE + 512];
				unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

				if (!r || !r->answered)
					break;
				if (lws_add_http_common_headers(wsi, r->status, r->ctype, r->resp_len, &p, end) ||
					lws_add_http_header_by_name(wsi, (const unsigned char *) "cache-control:",
												(const unsigned char *) "no-store", 8, &p, end) ||
					lws_finalize_write_http_header(wsi, start, &p, end))
					return 1;
				if (r->resp_len &&
					lws_write(wsi, r->resp + LWS_PRE, r->resp_len, LWS_WRITE_HTTP_FINAL) !=
					(int) r->resp_len)
					return 1;
				/* done with it; the connection may carry another request */
				s->req = NULL;
				r->wsi = NULL;
				req_release(r);
				if (lws_http_transaction_completed(wsi))
					return -1;
				return 0;
			}
		case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
			/* the vhost's SSL_CTX, kept for reloading the certificate */
			tls_remember_server_ctx(user);
			return 0;
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (r)
			{
				s->req = NULL;
				r->wsi = NULL;
				req_release(r);
			}
			break;
		default:
			break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
