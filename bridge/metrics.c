/*
 * metrics.c - what /metrics and /readyz report beyond server.h's counters.
 *
 * Every STATS_US the general lane asks pankha.bridge_stats() for the
 * fleet (agents registered and online, sensors and fans, commands by
 * status) and the worker's last pass; /metrics shows the last answer and
 * its age, /readyz the worker.  Here too: connections closed by close
 * code (abnormal ones: not 1000 or 1001), application pings answered, and
 * the end-to-end command latency from issue to the agent's ack (observed
 * by the bridge that records the ack, agent_ws.c).
 */
#include "metrics.h"
#include "db.h"

#include <math.h>
#include <string.h>

#define STATS_US (5 * LWS_US_PER_SEC)

static struct btimer stats_timer;
static bool stats_in_flight;
static cJSON *stats;			/* pankha.bridge_stats()'s last answer */
static lws_usec_t stats_at;		/* when it came */

/* Close codes 1000..1015 and 4000..4015, and the others, per kind. */
static uint64_t closes[2][33];
static uint64_t pings[2];
static struct histogram command_e2e = {
	.name = "pankha_bridge_command_e2e_seconds",
	.help = "Time from a command being issued (commands.created_at) to its agent's ack being recorded, for the agents of this bridge.",
	.nbounds = 12,
	.bounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
};

/*
 * HTTP request latency by route (from the request's arrival to its answer
 * being set), one histogram per route of the table, found by its pattern
 * pointer; requests that matched no route count as route "none".
 */
#define HTTP_ROUTES_MAX 128

static struct
{
	const char *method;
	const char *pattern;
	uint64_t	counts[HIST_MAX_BUCKETS + 1];
	double		sum;
	uint64_t	count;
}			http_lat[HTTP_ROUTES_MAX];
static int	nhttp_lat;
static const double http_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define HTTP_NBOUNDS ((int) (sizeof(http_bounds) / sizeof(http_bounds[0])))

void
metrics_http_answered(const char *method, const char *pattern, double seconds)
{
	int			i, b;

	for (i = 0; i < nhttp_lat; i++)
		if (http_lat[i].pattern == pattern && http_lat[i].method == method)
			break;
	if (i == nhttp_lat)
	{
		if (nhttp_lat == HTTP_ROUTES_MAX)
			return;
		http_lat[i].method = method;
		http_lat[i].pattern = pattern;
		nhttp_lat++;
	}
	for (b = 0; b < HTTP_NBOUNDS; b++)
		if (seconds <= http_bounds[b])
			break;
	http_lat[i].counts[b]++;
	http_lat[i].sum += seconds;
	http_lat[i].count++;
}

static void stats_cb(lws_sorted_usec_list_t *sul);

static void
stats_done(struct db_query *q, PGresult *res)
{
	stats_in_flight = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		cJSON	   *s = cJSON_Parse(PQgetvalue(res, 0, 0));

		if (s)
		{
			cJSON_Delete(stats);
			stats = s;
			stats_at = now_us();
		}
	}
	else
		blog("warn", "stats", "pankha.bridge_stats failed: %s", PQresultErrorMessage(res));
	timer_schedule(&stats_timer, stats_cb, STATS_US);
}

static void
stats_cb(lws_sorted_usec_list_t *sul)
{
	struct db_query *q;

	if (stats_in_flight)
		return;
	q = db_query_new(LANE_GENERAL, "SELECT pankha.bridge_stats()::text", stats_done, NULL);
	if (!q)
	{
		timer_schedule(&stats_timer, stats_cb, STATS_US);
		return;
	}
	stats_in_flight = true;
	db_submit(q);
}

static void
on_listen_ready(void)
{
	if (!stats_in_flight)
	{
		timer_cancel(&stats_timer);
		timer_schedule(&stats_timer, stats_cb, 1);
	}
}

int
metrics_init(void)
{
	return db_on_listen_ready(on_listen_ready);
}

static int
close_slot(int code)
{
	if (code >= 1000 && code <= 1015)
		return code - 1000;
	if (code >= 4000 && code <= 4015)
		return 16 + code - 4000;
	return 32;
}

static int
slot_code(int slot)
{
	return slot < 16 ? 1000 + slot : 4000 + slot - 16;
}

/* A WebSocket connection closed with code (1006: lost without a close frame). */
void
metrics_note_close(bool agent, int code)
{
	closes[agent ? 0 : 1][close_slot(code)]++;
}

/* An application ping ({"type":"ping"}) answered with pong. */
void
metrics_note_ping(bool agent)
{
	pings[agent ? 0 : 1]++;
}

void
metrics_command_acked(double seconds)
{
	if (isfinite(seconds) && seconds >= 0)
		histogram_observe(&command_e2e, seconds);
}

static double
stat_num(const char *name)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(stats, name);

	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void
gauge(struct sbuf *b, const char *name, const char *help, double v)
{
	if (isnan(v))
		return;
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

void
metrics_write(struct sbuf *b)
{
	static const char *const kinds[2] = {"agent", "dashboard"};
	cJSON	   *cmds = cJSON_GetObjectItemCaseSensitive(stats, "commands");
	uint64_t	cum = 0;

	gauge(b, "pankha_agents_registered", "Agents registered in the database (pankha.bridge_stats).", stat_num("agents_registered"));
	gauge(b, "pankha_agents_online", "Agents online on any bridge.", stat_num("agents_online"));
	gauge(b, "pankha_sensors", "Sensors of every agent.", stat_num("sensors"));
	gauge(b, "pankha_fans", "Fans of every agent.", stat_num("fans"));
	if (cJSON_IsObject(cmds))
	{
		static const char *const statuses[] = {"queued", "sent", "acked", "failed", "expired", "dead"};

		sbuf_printf(b, "# HELP pankha_commands Commands kept in the database by status (expired, dead and failed are the deliveries that did not succeed).\n"
					"# TYPE pankha_commands gauge\n");
		for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		{
			cJSON	   *n = cJSON_GetObjectItemCaseSensitive(cmds, statuses[i]);

			sbuf_printf(b, "pankha_commands{status=\"%s\"} %.17g\n", statuses[i],
						cJSON_IsNumber(n) ? n->valuedouble : 0.0);
		}
	}
	gauge(b, "pankha_worker_seconds_since_pass", "Seconds since the background worker's last pass (pankha.worker_status).",
		  stat_num("worker_seconds_since_pass"));
	if (stats)
		gauge(b, "pankha_bridge_stats_age_seconds", "Age of the figures above (read every 5 s).",
			  (double) (now_us() - stats_at) / 1e6);

	sbuf_printf(b, "# HELP pankha_bridge_disconnects_total WebSocket connections closed, by kind and close code (1006: lost without a close frame; other: codes outside 1000-1015 and 4000-4015).\n"
				"# TYPE pankha_bridge_disconnects_total counter\n");
	for (int k = 0; k < 2; k++)
		for (int s = 0; s < 33; s++)
			if (closes[k][s])
			{
				if (s == 32)
					sbuf_printf(b, "pankha_bridge_disconnects_total{kind=\"%s\",code=\"other\"} %llu\n",
								kinds[k], (unsigned long long) closes[k][s]);
				else
					sbuf_printf(b, "pankha_bridge_disconnects_total{kind=\"%s\",code=\"%d\",abnormal=\"%s\"} %llu\n",
								kinds[k], slot_code(s), s <= 1 ? "false" : "true",
								(unsigned long long) closes[k][s]);
			}
	sbuf_printf(b, "# HELP pankha_bridge_pings_total Application pings received and answered with a pong, by kind.\n"
				"# TYPE pankha_bridge_pings_total counter\n"
				"pankha_bridge_pings_total{kind=\"agent\"} %llu\n"
				"pankha_bridge_pings_total{kind=\"dashboard\"} %llu\n",
				(unsigned long long) pings[0], (unsigned long long) pings[1]);

	sbuf_printf(b, "# HELP pankha_bridge_http_request_seconds HTTP requests from arrival to answer, by route (route=\"none\": no route matched).\n"
				"# TYPE pankha_bridge_http_request_seconds histogram\n");
	for (int i = 0; i < nhttp_lat; i++)
	{
		char		labels[400];
		uint64_t	c = 0;

		snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"",
				 http_lat[i].method ? http_lat[i].method : "", http_lat[i].pattern ? http_lat[i].pattern : "none");
		for (int k = 0; k < HTTP_NBOUNDS; k++)
		{
			c += http_lat[i].counts[k];
			sbuf_printf(b, "pankha_bridge_http_request_seconds_bucket{%s,le=\"%g\"} %llu\n", labels,
						http_bounds[k], (unsigned long long) c);
		}
		c += http_lat[i].counts[HTTP_NBOUNDS];
		sbuf_printf(b, "pankha_bridge_http_request_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
					"pankha_bridge_http_request_seconds_sum{%s} %.9g\n"
					"pankha_bridge_http_request_seconds_count{%s} %llu\n",
					labels, (unsigned long long) c, labels, http_lat[i].sum, labels,
					(unsigned long long) http_lat[i].count);
	}

	sbuf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", command_e2e.name, command_e2e.help, command_e2e.name);
	for (int i = 0; i < command_e2e.nbounds; i++)
	{
		cum += command_e2e.counts[i];
		sbuf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", command_e2e.name, command_e2e.bounds[i],
					(unsigned long long) cum);
	}
	cum += command_e2e.counts[command_e2e.nbounds];
	sbuf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
				command_e2e.name, (unsigned long long) cum, command_e2e.name, command_e2e.sum,
				command_e2e.name, (unsigned long long) command_e2e.count);
}

/* /readyz's worker members: ,"worker":{"running","last_pass","seconds_since_pass"} or null. */
void
metrics_readyz(struct sbuf *b)
{
	cJSON	   *running = cJSON_GetObjectItemCaseSensitive(stats, "worker_running");
	const char *last = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(stats, "worker_last_pass"));
	double		since = stat_num("worker_seconds_since_pass");

	if (!stats)
	{
		sbuf_printf(b, ",\"worker\":null");
		return;
	}
	sbuf_printf(b, ",\"worker\":{\"running\":%s,\"last_pass\":", cJSON_IsTrue(running) ? "true" : "false");
	if (last)
	{
		char	   *q = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(stats, "worker_last_pass"));

		sbuf_printf(b, "%s", q ? q : "null");
		free(q);
	}
	else
		sbuf_printf(b, "null");
	if (isnan(since))
		sbuf_printf(b, ",\"seconds_since_pass\":null}");
	else
		sbuf_printf(b, ",\"seconds_since_pass\":%.3f}", since);
}
