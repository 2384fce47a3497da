/*
 * agent_commands.c - what the bridge pushes to agents: their effective
 * settings once a connection is recorded, and the commands claimed for
 * them.
 *
 * Commands are claimed with pankha.claim_commands, for every agent with
 * something waiting in one call: when the extension's NOTIFY
 * pankha_command names an agent connected here, after every connect (once
 * its settings went out), and for every connected agent once a LISTEN is
 * in effect again after a reconnect (notifications may have been missed
 * while it was away).  Each claimed command goes out as "command", or for
 * update_settings as "config_update" carrying its command_id.
 *
 * A claim commits with synchronous_commit off: waiting for its WAL flush
 * was most of a command's latency (commit to agent p50 3.6 ms instead of
 * 9.3 ms, one agent, fsync on, a loaded 2-core host), and what a crash can
 * lose is only the claim's mark: the command is then claimed and delivered
 * again, which agents tolerate (command ids; acks are idempotent).
 *
 * A claim is one round trip: BEGIN, its xid, the claim, then COMMIT, all
 * pipelined (db.c's one_trip), and up to MAX_CLAIMS_IN_FLIGHT run at once
 * with each agent in one of them at most.  With one claim in flight and
 * a second round trip for its COMMIT, a NOTIFY arriving meanwhile waited
 * for both (fleet-bench, 5,000 agents: p99 9.4 ms commit to agent, of
 * which 4.5 ms the claim's answer, 3.9 ms its COMMIT, 2.5 ms waiting for
 * the claim before).
 */
#include "agent_commands.h"
#include "db.h"

#include <string.h>

/* Agents whose waiting commands should be claimed. */
static struct agent **claim_list;
static size_t claim_count, claim_cap;
static struct btimer claim_sul;
static bool claim_sul_armed;
static int	claims_in_flight;

/*
 * After a claim fails, the next waits: 50 ms, doubling to 1 s while they
 * keep failing (a revoked grant, a broken function), so a failing claim
 * is not re-sent in a tight loop with an error line each time.  The first
 * claim that succeeds puts it back to 0.
 */
#define CLAIM_RETRY_FIRST_US (50 * 1000)
#define CLAIM_RETRY_MAX_US (1000 * 1000)
static lws_usec_t claim_retry_us;

/*
 * Claims in flight at once.  A claim is one round trip (its COMMIT is
 * pipelined behind it); more than one may run, each on the general
 * connection with least in flight, so a NOTIFY read while one runs is not
 * held back until it completes.  An agent is in one claim at a time: its
 * commands go out in the order claim_commands returns them.
 */
#define MAX_CLAIMS_IN_FLIGHT 4

static void schedule_claim(void);

/*
 * --verbose 2: when the NOTIFY of each recent command was read, by
 * command id, for its command_trace line (ws.c logs it once written).
 */
#define TRACE_RING 256
static struct
{
	char		id[40];
	lws_usec_t	at;
}			notified[TRACE_RING];
static unsigned notified_next;

static lws_usec_t
notified_at(const char *id)
{
	for (unsigned i = 0; i < TRACE_RING; i++)
		if (!strcmp(notified[i].id, id))
			return notified[i].at;
	return 0;
}

static void
settings_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (a->ws.wsi && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		struct sbuf b = {0};
		const char *settings = PQgetisnull(res, 0, 0) ? "{}" : PQgetvalue(res, 0, 0);

		sbuf_puts(&b, "{\"type\":\"config_update\",\"data\":");
		sbuf_puts(&b, settings);
		sbuf_puts(&b, "}");
		if (!b.failed)
			agent_send(a, b.data, b.len, false);
		sbuf_free(&b);
	}
	else if (a->ws.wsi)
		blog("warn", "effective_settings", "agent %s: %s", a->agent_id,
			 PQresultErrorMessage(res));
	/* then everything that waited for it while it was away */
	if (a->ws.wsi)
		agent_want_commands(a);
	agent_release(a);
}

/* A connection was recorded: send its effective settings, then its commands. */
static void
on_opened(struct agent *a)
{
	struct db_query *s;

	if (a->settings)
	{
		/* the batch that recorded the connection brought them */
		struct sbuf b = {0};

		sbuf_puts(&b, "{\"type\":\"config_update\",\"data\":");
		sbuf_puts(&b, a->settings);
		sbuf_puts(&b, "}");
		if (!b.failed)
			agent_send(a, b.data, b.len, false);
		sbuf_free(&b);
		free(a->settings);
		a->settings = NULL;
		agent_want_commands(a);
		return;
	}
	s = db_query_new(LANE_GENERAL, "SELECT pankha.effective_settings($1)::text",
					 settings_done, a);

	if (s)
		db_query_key(s, a->agent_id);
	if (s && !db_query_param(s, a->agent_id, strlen(a->agent_id)))
	{
		a->refs++;
		db_submit(s);
	}
	else if (s)
		db_query_free(s);
}

/* Ask for an agent's waiting commands at the next claim. */
void
agent_want_commands(struct agent *a)
{
	if (a->claim_wanted || !a->ws.wsi || !a->connection_id)
		return;
	if (a->claiming)
	{
		/* after the claim it is in: a second one could overtake it */
		a->claim_again = true;
		return;
	}
	if (claim_count == claim_cap)
	{
		size_t		ncap = claim_cap ? claim_cap * 2 : 64;
		struct agent **n = realloc(claim_list, ncap * sizeof(*n));

		if (!n)
			return;				/* the next notification will try again */
		claim_list = n;
		claim_cap = ncap;
	}
	a->claim_wanted = true;
	a->refs++;
	claim_list[claim_count++] = a;
	schedule_claim();
}

/* Claim for every connected agent (LISTEN is in effect again). */
static void
agents_claim_all(void)
{
	for (struct agent *a = agents_first(); a; a = a->all_next)
		agent_want_commands(a);
}

static command_sent_fn on_sent;	/* ui_ws.c's, for command_status */

int
agent_commands_on_sent(command_sent_fn fn)
{
	if (on_sent)
		return -1;
	on_sent = fn;
	return 0;
}

/* The agents of one claim call, released when it completes. */
struct claim
{
	size_t		n;
	struct agent **agents;
	lws_usec_t	submitted_at;
};

/* Build the message an agent receives for one claimed command. */
static void
push_command(struct agent *a, PGresult *res, int r, struct db_query *q)
{
	const char *id = PQgetvalue(res, r, 0);
	const char *type = PQgetvalue(res, r, 2);
	cJSON	   *params = cJSON_Parse(PQgetisnull(res, r, 3) ? "{}" : PQgetvalue(res, r, 3));
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data;

	if (!msg || !params)
	{
		cJSON_Delete(msg);
		cJSON_Delete(params);
		return;
	}
	if (!strcmp(type, "update_settings") && cJSON_IsObject(params))
	{
		/* settings go out as config_update carrying the command id */
		cJSON_AddStringToObject(msg, "type", "config_update");
		cJSON_DeleteItemFromObjectCaseSensitive(params, "command_id");
		cJSON_AddStringToObject(params, "command_id", id);
		cJSON_AddItemToObject(msg, "data", params);
	}
	else
	{
		cJSON_AddStringToObject(msg, "type", "command");
		data = cJSON_AddObjectToObject(msg, "data");
		cJSON_AddStringToObject(data, "command_id", id);
		cJSON_AddStringToObject(data, "command_type", type);
		cJSON_AddItemToObject(data, "parameters", params);
		cJSON_AddStringToObject(data, "priority",
								PQgetisnull(res, r, 4) ? "normal" : PQgetvalue(res, r, 4));
	}
	agent_send_json(a, msg, true);
	if (srv.cfg.verbose >= 2)
	{
		struct claim *c = q->arg;
		lws_usec_t	n = notified_at(id);
		char		t[256];

		snprintf(t, sizeof(t), "id=%.40s n=%lld s=%lld c=%lld r=%lld d=%lld", id,
				 (long long) (n ? mono_to_real_us(n) : 0),
				 (long long) mono_to_real_us(c->submitted_at),
				 (long long) mono_to_real_us(q->sent_at),
				 (long long) mono_to_real_us(q->answered_at),
				 (long long) mono_to_real_us(now_us()));
		ws_trace_last(&a->ws, strdup(t));
	}
	if (on_sent)
		on_sent(a, id);
}


static void
claim_done(struct db_query *q, PGresult *res)
{
	struct claim *c = q->arg;

	claims_in_flight--;
	for (size_t i = 0; i < c->n; i++)
		c->agents[i]->claiming = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		claim_retry_us = 0;
		for (int r = 0; r < PQntuples(res); r++)
		{
			struct agent *a = agent_find(PQgetvalue(res, r, 1));

			if (a && a->ws.wsi && !a->ws.close_code)
				push_command(a, res, r, q);
			/* else: it stays claimed until its visibility runs out */
		}
		for (size_t i = 0; i < c->n; i++)
		{
			if (c->agents[i]->claim_again)
			{
				c->agents[i]->claim_again = false;
				agent_want_commands(c->agents[i]);
			}
			agent_release(c->agents[i]);
		}
	}
	else
	{
		blog("error", "claim_commands", "%s", PQresultErrorMessage(res));
		claim_retry_us = claim_retry_us ? claim_retry_us * 2 : CLAIM_RETRY_FIRST_US;
		if (claim_retry_us > CLAIM_RETRY_MAX_US)
			claim_retry_us = CLAIM_RETRY_MAX_US;
		/* put them back for the next claim */
		for (size_t i = 0; i < c->n; i++)
		{
			c->agents[i]->claim_wanted = false;
			c->agents[i]->claim_again = false;
			agent_want_commands(c->agents[i]);
			agent_release(c->agents[i]);
		}
	}
	free(c->agents);
	free(c);
	if (claim_count)
		schedule_claim();
}

static void
claim_cb(lws_sorted_usec_list_t *sul)
{
	struct claim *c;
	struct sbuf ids = {0};
	struct db_query *q;
	char		vis[32], max[32];

	claim_sul_armed = false;
	if (!claim_count || claims_in_flight >= MAX_CLAIMS_IN_FLIGHT)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->agents = claim_list;
	c->n = claim_count;
	c->submitted_at = now_us();
	claim_list = NULL;
	claim_count = claim_cap = 0;

	sbuf_text_array_begin(&ids);
	for (size_t i = 0; i < c->n; i++)
	{
		c->agents[i]->claim_wanted = false;
		c->agents[i]->claiming = true;
		sbuf_text_array_elem(&ids, c->agents[i]->agent_id, strlen(c->agents[i]->agent_id));
	}
	sbuf_text_array_end(&ids, c->n);
	snprintf(vis, sizeof(vis), "%d seconds", srv.cfg.command_visibility_s);
	snprintf(max, sizeof(max), "%zu", c->n * 100 > 10000 ? 10000 : c->n * 100);
	q = db_query_new(LANE_GENERAL,
					 "SELECT c.command_id, c.agent_id, c.command_type, c.parameters, c.priority, c.attempts "
					 "FROM (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)) s, "
					 "pankha.claim_commands($1::text[], $2::interval, $3::integer) c",
					 claim_done, c);
	if (q)
	{
		q->once = true;			/* a claim lost with its connection is not claimed again */
		q->one_trip = true;		/* (unless lost before its xid came: then again, harmlessly) */
	}
	if (!q || db_query_param_sbuf(q, &ids) ||
		db_query_param(q, vis, strlen(vis)) || db_query_param(q, max, strlen(max)))
	{
		if (q)
			db_query_free(q);
		for (size_t i = 0; i < c->n; i++)
		{
			c->agents[i]->claiming = c->agents[i]->claim_again = false;
			agent_release(c->agents[i]);
		}
		free(c->agents);
		free(c);
		sbuf_free(&ids);
		return;
	}
	sbuf_free(&ids);
	claims_in_flight++;
	db_submit(q);
}

static void
schedule_claim(void)
{
	if (claim_sul_armed || claims_in_flight >= MAX_CLAIMS_IN_FLIGHT)
		return;
	claim_sul_armed = true;
	timer_schedule(&claim_sul, claim_cb, claim_retry_us ? claim_retry_us : 1);
}

/* NOTIFY pankha_command: claim for the agent it names, if connected here. */
static void
on_command_notify(const char *channel, const char *payload)
{
	cJSON	   *p = cJSON_Parse(payload);
	struct agent *a = agent_find(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id")));

	if (srv.cfg.verbose >= 2 && a)
	{
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "command_id"));

		if (id)
		{
			snprintf(notified[notified_next].id, sizeof(notified[0].id), "%s", id);
			notified[notified_next].at = now_us();
			notified_next = (notified_next + 1) % TRACE_RING;
		}
	}

	if (a)
		agent_want_commands(a);
	cJSON_Delete(p);
}

/* Register with the database and the agents; called before db_init(). */
int
agent_commands_init(void)
{
	if (db_listen("pankha_command", on_command_notify) ||
		db_on_listen_ready(agents_claim_all) ||
		agents_on_opened(on_opened))
		return -1;
	return 0;
}
