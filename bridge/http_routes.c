/*
 * http_routes.c - the routes of the HTTP API: the table, and a handler
 * for each row.
 *
 * Adding an endpoint is adding a row to http_routes[] below and its
 * handler above it (see bridge/README.md, "Adding an endpoint").  By the
 * time a handler runs, http_api.c has matched the method and path,
 * checked the role, inflated and parsed the body; the handler validates
 * what it reads (with the validator of actions.c when /ws/ui has the same
 * action) and answers, usually with one http_run_json() call of the
 * extension's function.
 */
#include "http_routes.h"
#include "agents.h"
#include "credentials.h"
#include "ingest_batch.h"
#include "admission.h"
#include "openapi.h"
#include "ui_ws.h"
#include "metrics.h"

#include <malloc.h>
#include <string.h>

/* ---------------------------------------------------------------- probes */

/* GET /healthz: the process answers; whether the database is reachable, and uptime. */
static void
get_healthz(struct http_req *r, cJSON *body)
{
	char		text[160];

	snprintf(text, sizeof(text), "{\"status\":\"ok\",\"database\":%s,\"uptime_seconds\":%lld}",
			 db_ready() ? "true" : "false",
			 (long long) ((now_us() - srv.started) / LWS_US_PER_SEC));
	http_respond_json(r, 200, text);
}

/*
 * GET /readyz: database up, credentials loaded, not draining; and the
 * connections, whether the LISTEN is in effect, and the worker's last
 * pass (pankha.worker_status, read every few seconds: metrics.c).
 */
static void
get_readyz(struct http_req *r, cJSON *body)
{
	struct sbuf b = {0};
	bool		ready = creds_ready() && !srv.draining;

	sbuf_printf(&b, "{\"ready\":%s%s%s%s,\"database\":%s,\"listen\":%s,\"agents\":%d,\"dashboards\":%d",
				ready ? "true" : "false", ready ? "" : ",\"reason\":\"",
				ready ? "" : srv.draining ? "shutting down" :
				db_ready() ? "loading credentials" : "database unavailable",
				ready ? "" : "\"", db_ready() ? "true" : "false", db_listening() ? "true" : "false",
				agents_count(), ui_count());
	metrics_readyz(&b);
	sbuf_puts(&b, "}");
	if (b.failed)
		http_respond_error(r, 500, "out of memory");
	else
		http_respond_json(r, ready ? 200 : 503, b.data);
	sbuf_free(&b);
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

/* GET /metrics: Prometheus text. */
static void
get_metrics(struct http_req *r, cJSON *body)
{
	struct sbuf b = {0};
	const struct metrics *m = &srv.m;

	if (!limits_metrics_allowed(http_token(r)))
	{
		/* L11: --metrics-token-file */
		http_respond_error(r, 401, "/metrics needs its token (Authorization: Bearer <token>)");
		return;
	}
	sbuf_printf(&b, "# HELP pankha_bridge_connections Open WebSocket connections by kind.\n"
				"# TYPE pankha_bridge_connections gauge\n"
				"pankha_bridge_connections{kind=\"agent\"} %d\n"
				"pankha_bridge_connections{kind=\"dashboard\"} %d\n",
				agents_count(), ui_count());
	metric(&b, "pankha_bridge_frames_received_total", "counter", "Data frames read from agents.", NULL, m->frames_received);
	metric(&b, "pankha_bridge_frames_refused_total", "counter", "Data frames dropped for a limit; their connection was closed unacknowledged.", NULL, m->frames_refused);
	metric(&b, "pankha_bridge_frames_committed_total", "counter", "Data frames committed (stored or already stored).", NULL, m->frames_committed);
	metric(&b, "pankha_bridge_frames_rejected_total", "counter", "Data frames the extension rejected.", NULL, m->frames_rejected);
	metric(&b, "pankha_bridge_frames_held", "gauge", "Data frames waiting for their commit.", NULL, ingest_held());
	metric(&b, "pankha_bridge_ingest_failing", "gauge", "Ingest shards whose last batch failed for a reason not its frames' (a full disk: SQLSTATE 53100); their frames are held, unacknowledged.", NULL, ingest_failing());
	metric(&b, "pankha_bridge_ingest_retries_total", "counter", "Ingest batches sent again after such a failure.", NULL, m->ingest_retries);
	metric(&b, "pankha_bridge_messages_invalid_total", "counter", "Malformed or unknown messages answered with an error.", NULL, m->messages_invalid);
	metric(&b, "pankha_bridge_commands_pushed_total", "counter", "Commands written to agents.", NULL, m->commands_pushed);
	metric(&b, "pankha_bridge_commands_acked_total", "counter", "Commands agents acknowledged as done.", NULL, m->commands_acked);
	metric(&b, "pankha_bridge_commands_failed_total", "counter", "Commands agents reported as failed.", NULL, m->commands_failed);
	metric(&b, "pankha_bridge_bytes_received_total", "counter", "WebSocket payload bytes received.", NULL, m->bytes_in);
	metric(&b, "pankha_bridge_bytes_sent_total", "counter", "WebSocket payload bytes sent.", NULL, m->bytes_out);
	metric(&b, "pankha_bridge_db_reconnects_total", "counter", "Database connections re-established.", NULL, m->db_reconnects);
	metric(&b, "pankha_bridge_heartbeats_total", "counter", "Heartbeats recorded in pankha.bridges.", NULL, m->heartbeats);
	metric(&b, "pankha_bridge_heartbeat_expired_total", "counter", "Times this bridge found itself declared dead and dropped its agents.", NULL, m->heartbeat_expired);
	metric(&b, "pankha_bridge_db_ready", "gauge", "1 when every database connection is up.", NULL, db_ready());
	metric(&b, "pankha_bridge_handshakes_refused_total", "counter", "WebSocket handshakes refused for credentials.", NULL, m->handshakes_refused);
	metric(&b, "pankha_bridge_closed_rate_limit_total", "counter", "Agents closed for exceeding the message rate.", NULL, m->closed_rate_limit);
	metric(&b, "pankha_bridge_closed_too_big_total", "counter", "Connections closed for oversize messages.", NULL, m->closed_too_big);
	metric(&b, "pankha_bridge_closed_silent_total", "counter", "Agents closed for silence.", NULL, m->closed_silent);
	metric(&b, "pankha_bridge_agent_frames_dropped_total", "counter", "Data frames agents report they dropped from a full resend buffer (the growth of their status reports' dropped_frames).", NULL, m->agent_frames_dropped);
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
	metric(&b, "pankha_bridge_http_rate_limited_total", "counter", "HTTP requests answered 429 (--http-rate-token, --http-rate-ip).", NULL, m->http_rate_limited);
	metric(&b, "pankha_bridge_live_received_total", "counter", "Frames of agents on other bridges heard on pankha_live for this bridge's dashboards.", NULL, m->live_received);
	metric(&b, "pankha_bridge_live_watch_calls_total", "counter", "Times this bridge recorded its dashboards' topics with pankha.live_watch.", NULL, m->live_watch_calls);
	metric(&b, "pankha_bridge_audit_received_total", "counter", "Audit rows heard on pankha_audit (sent to admins subscribed to audit).", NULL, m->audit_received);
	metric(&b, "pankha_bridge_dashboards_refused_caps_total", "counter", "Dashboard handshakes refused for --ui-max-connections, --ui-max-per-token or --ui-max-per-ip.", NULL, m->ui_refused_caps);
	metric(&b, "pankha_bridge_dashboards_closed_idle_total", "counter", "Dashboards closed (4008) after --ui-idle-timeout without a message.", NULL, m->ui_closed_idle);
	metric(&b, "pankha_bridge_dashboard_messages_rate_limited_total", "counter", "Dashboard messages dropped over --ui-rate-limit (answered rate_limited).", NULL, m->ui_rate_limited);
	metric(&b, "pankha_bridge_dashboards_closed_rate_limit_total", "counter", "Dashboards closed (1008) for flooding past --ui-rate-limit.", NULL, m->ui_closed_rate_limit);
	metric(&b, "pankha_bridge_deflate_parked", "gauge", "Connections whose inflater is freed between messages, only its window kept.", NULL, (double) m->deflate_parked);
	/* H2, M5, L2 (admission.c, ingest_batch.c) */
	metric(&b, "pankha_bridge_http_connections", "gauge", "Accepted connections that are not WebSockets (HTTP requests, handshakes in progress).", NULL, limits_http_connections());
	metric(&b, "pankha_bridge_connections_refused_total", "counter", "Accepted sockets closed at once: --max-connections reached.", NULL, m->connections_refused_total);
	metric(&b, "pankha_bridge_connections_refused_ip_total", "counter", "Accepted sockets closed at once: --max-connections-ip reached for their address.", NULL, m->connections_refused_ip);
	metric(&b, "pankha_bridge_request_timeouts_total", "counter", "Connections closed because their request or handshake outlasted --request-timeout.", NULL, m->request_timeouts);
	metric(&b, "pankha_bridge_proxy_headers_total", "counter", "PROXY protocol headers read from --trusted-proxy connections (--proxy-protocol).", NULL, m->proxy_headers);
	{
		static const char *const reasons[] = {"missing", "malformed", "timeout", "closed"};

		sbuf_printf(&b, "# HELP pankha_bridge_proxy_header_refused_total Connections from --trusted-proxy addresses closed for their PROXY header: none, malformed, late (--proxy-protocol-timeout) or cut short.\n"
					"# TYPE pankha_bridge_proxy_header_refused_total counter\n");
		for (int i = 0; i < 4; i++)
			sbuf_printf(&b, "pankha_bridge_proxy_header_refused_total{reason=\"%s\"} %llu\n", reasons[i],
						(unsigned long long) m->proxy_refused[i]);
	}
	metric(&b, "pankha_bridge_auth_fail_limited_total", "counter", "Handshakes and requests answered 429 after --auth-fail-limit-ip refused credentials from their address.", NULL, m->auth_fail_limited);
	metric(&b, "pankha_bridge_frames_held_bytes", "gauge", "Bytes of data frames (and their dashboard copies) waiting for their commit.", NULL, ingest_held_bytes());
	metric(&b, "pankha_bridge_closed_held_bytes_total", "counter", "Agents closed unacknowledged for holding more than twice --agent-held-bytes.", NULL, m->closed_held_bytes);
	metric_histogram(&b, &m->batch_size);
	metric_histogram(&b, &m->commit_seconds);
	metric_histogram(&b, &m->command_seconds);
	metrics_write(&b);
	if (b.failed)
		http_respond_error(r, 500, "out of memory");
	else
		http_respond(r, 200, "text/plain; version=0.0.4", b.data, b.len);
	sbuf_free(&b);
}

/* ---------------------------------------------------------------- agents */

/* POST /api/v1/agents/register: enrollment key as bearer. */
static void
post_register(struct http_req *r, cJSON *body)
{
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "agent_id"));
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "name"));
	const char *host = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "hostname"));
	cJSON	   *caps = cJSON_GetObjectItemCaseSensitive(body, "capabilities");
	char	   *capstext;
	const char *params[6];

	if (!http_token(r))
	{
		http_respond_error(r, 401, "enrollment key missing (Authorization: Bearer <key>)");
		return;
	}
	if (!id)
	{
		http_respond_error(r, 400, "agent_id: missing or not a string");
		return;
	}
	if (caps && !cJSON_IsObject(caps))
	{
		http_respond_error(r, 400, "capabilities: not an object");
		return;
	}
	capstext = caps ? cJSON_PrintUnformatted(caps) : strdup("{}");
	if (!capstext)
	{
		http_respond_error(r, 500, "out of memory");
		return;
	}
	params[0] = http_token(r);
	params[1] = id;
	params[2] = name ? name : id;
	params[3] = host;
	params[4] = capstext;
	params[5] = http_peer(r);
	http_on_null(r, 401, "invalid enrollment key");
	http_run_json(r, "SELECT json_build_object('agent_id', $2::text, 'token', t)::text"
			 " FROM pankha.try_enroll_agent($1, $2, $3, $4, $5::jsonb, $6) AS t"
			 " WHERE t IS NOT NULL", 6, params);
	free(capstext);
}

/* POST /api/v1/agents/sync: the HTTP fallback of an agent (agent token). */
static void
post_sync(struct http_req *r, cJSON *body)
{
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "agent_id"));
	cJSON	   *frames = cJSON_GetObjectItemCaseSensitive(body, "frames");
	cJSON	   *acks = cJSON_GetObjectItemCaseSensitive(body, "acks");
	char	   *ftext, *atext;
	const char *params[5];

	if (!http_token(r))
	{
		http_respond_error(r, 401, "agent token missing (Authorization: Bearer <token>)");
		return;
	}
	if (!id)
	{
		http_respond_error(r, 400, "agent_id: missing or not a string");
		return;
	}
	if ((frames && !cJSON_IsArray(frames)) || (acks && !cJSON_IsArray(acks)))
	{
		http_respond_error(r, 400, "frames and acks must be arrays");
		return;
	}
	ftext = frames ? cJSON_PrintUnformatted(frames) : strdup("[]");
	atext = acks ? cJSON_PrintUnformatted(acks) : strdup("[]");
	if (!ftext || !atext)
	{
		free(ftext);
		free(atext);
		http_respond_error(r, 500, "out of memory");
		return;
	}
	params[0] = id;
	params[1] = http_token(r);
	params[2] = http_peer(r);
	params[3] = ftext;
	params[4] = atext;
	http_on_null(r, 401, "invalid agent credentials");
	http_run_json(r, "SELECT pankha.agent_sync($1, $2, $3, $4::jsonb, $5::jsonb)::text", 5, params);
	free(ftext);
	free(atext);
}

/* ---------------------------------------------------------------- dashboard */

/* GET /api/v1/agents: every agent with status, last_seen, sensor and fan counts. */
static void
get_agents(struct http_req *r, cJSON *body)
{
	http_run_json(r,
				  "SELECT coalesce(json_agg(x ORDER BY x.agent_id), '[]')::text FROM ("
				  " SELECT a.agent_id, a.name, a.hostname, a.status, a.last_seen,"
				  "  (SELECT count(*) FROM pankha.sensors s WHERE s.agent_id = a.agent_id) AS sensors,"
				  "  (SELECT count(*) FROM pankha.fans f WHERE f.agent_id = a.agent_id) AS fans"
				  " FROM pankha.agents a) x", 0, NULL);
}

/* GET /api/v1/agents/{agent_id}/latest */
static void
get_latest(struct http_req *r, cJSON *body)
{
	const char *params[] = {http_arg(r, "agent_id")};

	http_on_null(r, 404, "no frame from this agent yet");
	http_run_json(r, "SELECT row_to_json(l)::text FROM pankha.latest l WHERE l.agent_id = $1",
				  1, params);
}

/* GET /api/v1/agents/{agent_id}/settings: effective settings. */
static void
get_settings(struct http_req *r, cJSON *body)
{
	const char *params[] = {http_arg(r, "agent_id")};

	http_run_json(r, "SELECT pankha.effective_settings($1)::text", 1, params);
}

/* POST /api/v1/settings: the setting validator of actions.c, then pankha.set_setting. */
static void
post_setting(struct http_req *r, cJSON *body)
{
	struct setting_args a;
	struct action_error err;

	if (action_check_setting(body, "", &a, &err))
	{
		http_respond_error(r, 400, err.message);
		setting_args_free(&a);
		return;
	}
	{
		const char *params[] = {a.scope, a.key, a.value, http_user(r)};

		http_run_json(r, "SELECT json_build_object('agents_updated', "
					  "pankha.set_setting($1, $2, $3::jsonb, $4))::text", 4, params);
	}
	setting_args_free(&a);
}

/* POST /api/v1/alerts: the body goes to every dashboard on topic alerts. */
static void
post_alert(struct http_req *r, cJSON *body)
{
	char	   *text = cJSON_PrintUnformatted(body);
	const char *params[] = {text};

	if (text && strlen(text) > 7900)
		http_respond_error(r, 400, "alert too large (at most 7900 bytes)");
	else if (text)
		http_run_json(r, "SELECT json_build_object('sent', true, 'at', now())::text"
					  " FROM pg_notify('pankha_alert', $1)", 1, params);
	else
		http_respond_error(r, 500, "out of memory");
	free(text);
}

/* GET /api/v1/openapi.json: the document of this very table. */
static void
get_openapi(struct http_req *r, cJSON *body)
{
	char	   *doc = openapi_document(http_routes, http_nroutes);

	if (doc)
		http_respond_json(r, 200, doc);
	else
		http_respond_error(r, 500, "out of memory");
	free(doc);
}

/* ---------------------------------------------------------------- the table */

/*
 * Every route: method, pattern ({name} is one path segment, read with
 * http_arg), the least role, the handler.  First match wins.
 */
const struct http_route http_routes[] = {
	{"GET", "/healthz", ROLE_PUBLIC, get_healthz},
	{"GET", "/readyz", ROLE_PUBLIC, get_readyz},
	{"GET", "/metrics", ROLE_PUBLIC, get_metrics},
	{"GET", "/api/v1/openapi.json", ROLE_PUBLIC, get_openapi},
	{"POST", "/api/v1/agents/register", ROLE_AGENT, post_register},
	{"POST", "/api/v1/agents/sync", ROLE_AGENT, post_sync},
	{"GET", "/api/v1/agents", ROLE_VIEWER, get_agents},
	{"GET", "/api/v1/agents/{agent_id}/latest", ROLE_VIEWER, get_latest},
	API_ROUTE("GET", "/api/v1/agents/{agent_id}/history", ROLE_VIEWER, "api_history", NULL),
	{"GET", "/api/v1/agents/{agent_id}/settings", ROLE_VIEWER, get_settings},
	{"POST", "/api/v1/settings", ROLE_OPERATOR, post_setting},
	{"POST", "/api/v1/alerts", ROLE_ADMIN, post_alert},

	/* the dashboard API: one extension function each (docs/api-functions.md) */
	API_ROUTE("GET", "/api/v1/fleet", ROLE_VIEWER, "api_fleet", NULL),
	API_ROUTE("GET", "/api/v1/agents/{agent_id}", ROLE_VIEWER, "api_agent", NULL),
	API_ROUTE("GET", "/api/v1/commands", ROLE_VIEWER, "api_commands", NULL),
	API_ROUTE("GET", "/api/v1/agents/{agent_id}/commands", ROLE_VIEWER, "api_commands", NULL),
	API_ROUTE("GET", "/api/v1/commands/{command_id}", ROLE_VIEWER, "api_command", NULL),
	API_ROUTE("POST", "/api/v1/agents/{agent_id}/commands", ROLE_OPERATOR, "api_send_command", NULL),
	API_ROUTE("GET", "/api/v1/profiles", ROLE_VIEWER, "api_profiles", NULL),
	API_ROUTE("POST", "/api/v1/profiles", ROLE_ADMIN, "api_profile_create", NULL),
	API_ROUTE("POST", "/api/v1/profiles/apply", ROLE_OPERATOR, "api_profile_apply", NULL),
	API_ROUTE("PATCH", "/api/v1/profiles/{name}", ROLE_ADMIN, "api_profile_update", NULL),
	API_ROUTE("DELETE", "/api/v1/profiles/{name}", ROLE_ADMIN, "api_profile_delete", NULL),
	API_ROUTE("PUT", "/api/v1/agents/{agent_id}/fans/{fan_id}/profile", ROLE_OPERATOR, "api_profile_assign", NULL),
	API_ROUTE("DELETE", "/api/v1/agents/{agent_id}/fans/{fan_id}/profile", ROLE_OPERATOR, "api_profile_assign",
			  "{\"unassign\":true}"),
	API_ROUTE("PUT", "/api/v1/agents/{agent_id}/fans/{fan_id}/limits", ROLE_ADMIN, "api_fan_limits", NULL),
	API_ROUTE("POST", "/api/v1/emergency-stop", ROLE_OPERATOR, "api_emergency_stop", NULL),
	API_ROUTE("POST", "/api/v1/restore-auto", ROLE_OPERATOR, "api_restore_auto", NULL),
	API_ROUTE("GET", "/api/v1/groups", ROLE_VIEWER, "api_groups", NULL),
	API_ROUTE("POST", "/api/v1/groups", ROLE_ADMIN, "api_group_create", NULL),
	API_ROUTE("PATCH", "/api/v1/groups/{name}", ROLE_ADMIN, "api_group_update", NULL),
	API_ROUTE("DELETE", "/api/v1/groups/{name}", ROLE_ADMIN, "api_group_delete", NULL),
	API_ROUTE("PUT", "/api/v1/groups/{name}/members", ROLE_ADMIN, "api_group_members", NULL),
	API_ROUTE("GET", "/api/v1/settings/definitions", ROLE_VIEWER, "api_setting_definitions", NULL),
	API_ROUTE("GET", "/api/v1/settings", ROLE_VIEWER, "api_settings", NULL),
	API_ROUTE("PUT", "/api/v1/settings", ROLE_OPERATOR, "api_setting_set", NULL),
	API_ROUTE("DELETE", "/api/v1/settings", ROLE_OPERATOR, "api_setting_set", "{\"clear\":true}"),
	API_ROUTE("GET", "/api/v1/alert-rules", ROLE_VIEWER, "api_alert_rules", NULL),
	API_ROUTE("POST", "/api/v1/alert-rules", ROLE_ADMIN, "api_alert_rule_create", NULL),
	API_ROUTE("PATCH", "/api/v1/alert-rules/{rule_id}", ROLE_ADMIN, "api_alert_rule_update", NULL),
	API_ROUTE("DELETE", "/api/v1/alert-rules/{rule_id}", ROLE_ADMIN, "api_alert_rule_delete", NULL),
	API_ROUTE("GET", "/api/v1/alerts", ROLE_VIEWER, "api_alerts", NULL),
	API_ROUTE("POST", "/api/v1/alerts/{alert_id}/ack", ROLE_OPERATOR, "api_alert_ack", NULL),
	API_ROUTE("GET", "/api/v1/alert-silences", ROLE_VIEWER, "api_alert_silences", NULL),
	API_ROUTE("POST", "/api/v1/alert-silences", ROLE_OPERATOR, "api_alert_silence", NULL),
	API_ROUTE("DELETE", "/api/v1/alert-silences/{silence_id}", ROLE_OPERATOR, "api_alert_unsilence", NULL),
	API_ROUTE("GET", "/api/v1/audit", ROLE_ADMIN, "api_audit", NULL),
	API_ROUTE("GET", "/api/v1/agents/{agent_id}/report", ROLE_VIEWER, "api_agent_report", NULL),
	API_ROUTE("GET", "/api/v1/reports/fleet", ROLE_VIEWER, "api_fleet_report", NULL),
	API_ROUTE("GET", "/api/v1/tokens", ROLE_ADMIN, "api_tokens", NULL),
	API_ROUTE("POST", "/api/v1/tokens", ROLE_ADMIN, "api_token_create", NULL),
	API_ROUTE("DELETE", "/api/v1/tokens/{token_id}", ROLE_ADMIN, "api_token_revoke", NULL),
};

const size_t http_nroutes = sizeof(http_routes) / sizeof(http_routes[0]);
