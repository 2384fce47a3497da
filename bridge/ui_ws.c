/*
 * ui_ws.c - the dashboard endpoint, /ws/ui.
 *
 * A dashboard user's token (Authorization header, ?token= or a subprotocol
 * entry for browsers) is checked at the handshake against the bridge's copy
 * of the live credentials (credentials.c); when it is revoked later the
 * connection is closed with 4001.  Clients subscribe to topics and receive the data frames,
 * agent status changes, command results and alerts of those topics only.
 * Operators and admins may send commands.  A client that does not read
 * what it is sent is dropped rather than allowed to grow the bridge.
 */
#include "ui_ws.h"
#include "actions.h"
#include "agent_commands.h"
#include "agents.h"
#include "credentials.h"
#include "db.h"
#include "ingest_batch.h"
#include "live.h"
#include "metrics.h"

#include <string.h>

#define UI_MAX_TOPICS 256

/* One dashboard connection. */
struct ui_client
{
	struct ws_conn ws;			/* the WebSocket connection (ws.c) */
	struct ui_client *next;
	struct ui_client *prev;
	int			refs;			/* wsi + queries */
	char		user[65];
	char		role[12];		/* viewer, operator or admin */
	char		selector[CRED_SELECTOR_LEN + 1];	/* of the token it authenticated with */
	unsigned char digest[CRED_DIGEST_LEN];	/* and that token's digest (L9) */
	char	  **topics;
	int			ntopics;
	uint64_t	seen;			/* the delivery that last reached it (ui_deliver) */
	double		tokens;			/* --ui-rate-limit bucket */
	lws_usec_t	tokens_at;		/* when it was last filled */
	int			dropped;		/* messages dropped over it in this minute */
	lws_usec_t	dropped_since;	/* the minute's start */
	char		peer[64];		/* client address */
	struct ui_client *anext;	/* admitted: from the handshake until it closes */
	struct ui_client *aprev;
};

static struct ui_client *clients;
static int	nclients;

/*
 * M7: every dashboard admitted (handshake accepted, established or not
 * yet), counted against --ui-max-connections, --ui-max-per-token and
 * --ui-max-per-ip; dashboards have their own budget (own_budget), apart
 * from the agents' --max-connections.
 */
static struct ui_client *admitted;
static int	nadmitted;
static struct btimer idle_timer;
static bool idle_armed;

static void
admit(struct ui_client *c)
{
	c->anext = admitted;
	c->aprev = NULL;
	if (admitted)
		admitted->aprev = c;
	admitted = c;
	nadmitted++;
}

static void
unadmit(struct ui_client *c)
{
	if (c->aprev)
		c->aprev->anext = c->anext;
	else if (admitted == c)
		admitted = c->anext;
	else
		return;					/* not admitted */
	if (c->anext)
		c->anext->aprev = c->aprev;
	c->anext = c->aprev = NULL;
	nadmitted--;
}

/* NULL when a dashboard with this token and address may connect, else why not. */
static const char *
over_cap(const char *selector, const char *peer, unsigned *status)
{
	int			same_token = 0, same_peer = 0;

	*status = 503;
	if (nadmitted >= srv.cfg.ui_max_connections)
		return "too many dashboard connections";
	for (struct ui_client *c = admitted; c; c = c->anext)
	{
		same_token += !strcmp(c->selector, selector);
		same_peer += !strcmp(c->peer, peer);
	}
	*status = 429;
	if (srv.cfg.ui_max_per_token > 0 && same_token >= srv.cfg.ui_max_per_token)
		return "too many dashboard connections with this token";
	if (srv.cfg.ui_max_per_ip > 0 && same_peer >= srv.cfg.ui_max_per_ip)
		return "too many dashboard connections from this address";
	return NULL;
}

/* Close the dashboards that sent nothing for --ui-idle-timeout (not even a ping). */
static void
idle_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	limit = (lws_usec_t) srv.cfg.ui_idle_timeout_s * LWS_US_PER_SEC;
	lws_usec_t	now = now_us();

	idle_armed = false;
	for (struct ui_client *c = clients; c; c = c->next)
		if (c->ws.wsi && !c->ws.close_code && now - c->ws.last_rx > limit)
		{
			srv.m.ui_closed_idle++;
			blog("info", "ui_idle", "dashboard %s from %s idle for %ds: closed", c->user, c->peer,
				 srv.cfg.ui_idle_timeout_s);
			ws_close(&c->ws, 4008, "idle");
		}
	if (clients)
	{
		idle_armed = true;
		timer_schedule(&idle_timer, idle_cb,
					   limit / 4 < LWS_US_PER_SEC ? LWS_US_PER_SEC : limit / 4);
	}
}

/*
 * The subscribers of each topic, in a hash table keyed by the topic's
 * name, so that delivering a message costs a lookup per topic that could
 * want it, not a scan of every client's topics (M7).
 */
#define TOPIC_BUCKETS 4096

struct topic
{
	struct topic *next;			/* in its bucket */
	struct ui_client **subs;
	int			nsubs;
	int			cap;
	char		name[];
};

static struct topic *topic_table[TOPIC_BUCKETS];
static int	ntopic_names;		/* topics with at least one subscriber */
static uint64_t delivery_gen;

static unsigned
topic_hash(const char *s)
{
	uint32_t	h = 2166136261u;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h % TOPIC_BUCKETS;
}

static struct topic *
topic_find(const char *name)
{
	for (struct topic *t = topic_table[topic_hash(name)]; t; t = t->next)
		if (!strcmp(t->name, name))
			return t;
	return NULL;
}

/* A topic that live.c records for other bridges to fill (not alerts, commands, audit). */
static bool
topic_is_live(const char *name)
{
	return !strcmp(name, "global") || !strncmp(name, "agents.", 7) ||
		!strncmp(name, "groups.", 7);
}

/* Add c to the subscribers of name; -1 when out of memory. */
static int
topic_add(const char *name, struct ui_client *c)
{
	struct topic *t = topic_find(name);

	if (!t)
	{
		unsigned	b = topic_hash(name);
		size_t		n = strlen(name);

		t = calloc(1, sizeof(*t) + n + 1);
		if (!t)
			return -1;
		memcpy(t->name, name, n + 1);
		t->next = topic_table[b];
		topic_table[b] = t;
		ntopic_names++;
		if (topic_is_live(name))
			live_topics_changed();
	}
	if (t->nsubs == t->cap)
	{
		int			cap = t->cap ? t->cap * 2 : 4;
		struct ui_client **subs = realloc(t->subs, cap * sizeof(*subs));

		if (!subs)
			return -1;
		t->subs = subs;
		t->cap = cap;
	}
	t->subs[t->nsubs++] = c;
	return 0;
}

/* Take c off the subscribers of name; the topic goes with its last one. */
static void
topic_remove(const char *name, struct ui_client *c)
{
	unsigned	b = topic_hash(name);
	struct topic **pt;

	for (pt = &topic_table[b]; *pt; pt = &(*pt)->next)
		if (!strcmp((*pt)->name, name))
			break;
	if (!*pt)
		return;
	for (int i = 0; i < (*pt)->nsubs; i++)
		if ((*pt)->subs[i] == c)
		{
			(*pt)->subs[i] = (*pt)->subs[--(*pt)->nsubs];
			break;
		}
	if ((*pt)->nsubs == 0)
	{
		struct topic *dead = *pt;

		*pt = dead->next;
		if (topic_is_live(dead->name))
			live_topics_changed();
		free(dead->subs);
		free(dead);
		ntopic_names--;
	}
}

/* Every topic live.c records, in a text[] for pankha.live_watch; how many. */
size_t
ui_live_topics(struct sbuf *array)
{
	size_t		n = 0;

	sbuf_text_array_begin(array);
	for (int b = 0; b < TOPIC_BUCKETS; b++)
		for (struct topic *t = topic_table[b]; t; t = t->next)
			if (topic_is_live(t->name))
			{
				sbuf_text_array_elem(array, t->name, strlen(t->name));
				n++;
			}
	sbuf_text_array_end(array, n);
	return n;
}

/* Send text to the subscribers of name not yet reached by this delivery. */
static void
topic_send(const char *name, const char *text, size_t len)
{
	struct topic *t = topic_find(name);

	if (!t)
		return;
	for (int i = 0; i < t->nsubs; i++)
	{
		struct ui_client *c = t->subs[i];

		if (c->seen == delivery_gen)
			continue;
		c->seen = delivery_gen;
		ws_send(&c->ws, text, len, false);
	}
}

int
ui_count(void)
{
	return nclients;
}

static bool
ui_any(void)
{
	return clients != NULL;
}

static void
ui_release(struct ui_client *c)
{
	if (--c->refs > 0)
		return;
	for (int i = 0; i < c->ntopics; i++)
		free(c->topics[i]);
	free(c->topics);
	outq_clear(&c->ws.out);
	free(c->ws.rx);
	free(c);
}

/* Close a dashboard's connection with code and reason (from anywhere). */
static void
ui_close(struct ui_client *c, int code, const char *reason)
{
	ws_close(&c->ws, code, reason);
}

/*
 * A credential changed: close the dashboards it no longer lets in
 * (selector NULL, after a full reload: every dashboard is rechecked).
 */
static void
on_credential_changed(char kind, const char *user, const char *selector)
{
	if (kind != CRED_UI)
		return;
	for (struct ui_client *c = clients; c; c = c->next)
		if ((!selector || !strcmp(c->selector, selector)) &&
			!creds_still_valid(CRED_UI, c->selector, c->digest, c->user, c->role))
			ui_close(c, 4001, "revoked");
}

/* Queue a message (ws.c drops a client that has too much unread). */
static void
ui_send(struct ui_client *c, const char *text, size_t len)
{
	ws_send(&c->ws, text, len, false);
}

static void
ui_send_json(struct ui_client *c, cJSON *msg)
{
	ws_send_json(&c->ws, msg, false);
}

static void
ui_error(struct ui_client *c, const char *code, const char *message)
{
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

	cJSON_AddStringToObject(msg, "type", "error");
	cJSON_AddStringToObject(data, "code", code);
	cJSON_AddStringToObject(data, "message", message);
	ui_send_json(c, msg);
}

static bool
subscribed(struct ui_client *c, const char *topic)
{
	for (int i = 0; i < c->ntopics; i++)
		if (!strcmp(c->topics[i], topic))
			return true;
	return false;
}

/*
 * Deliver a message about an agent to the clients subscribed to "global",
 * "agents.<id>", "groups.<its group>" or the topic also (NULL: none); with
 * agent_id NULL it goes to the subscribers of also only.
 */
static void
ui_deliver(const char *agent_id, const char *group, const char *also, const char *text,
		   size_t len)
{
	char		topic[8 + 128];

	if (!clients)
		return;
	delivery_gen++;
	if (agent_id)
	{
		topic_send("global", text, len);
		snprintf(topic, sizeof(topic), "agents.%s", agent_id);
		topic_send(topic, text, len);
		if (group)
		{
			snprintf(topic, sizeof(topic), "groups.%s", group);
			topic_send(topic, text, len);
		}
	}
	if (also)
		topic_send(also, text, len);
}

/* A message about an agent from another bridge (live.c): as ui_deliver. */
void
ui_deliver_agent(const char *agent_id, const char *group, const char *text, size_t len)
{
	ui_deliver(agent_id, group, NULL, text, len);
}

/* A data frame or status of an agent (ingest_on_stored's signature). */
static void
ui_broadcast(const char *agent_id, const char *group, const char *text, size_t len)
{
	ui_deliver(agent_id, group, NULL, text, len);
}

/*
 * {"type":"command_status","data":{"agent_id","command_id","status"}} to
 * the agent's subscribers and those of "commands", as a command moves.
 */
static void
ui_command_status(const char *agent_id, const char *command_id, const char *status)
{
	struct agent *a = agent_find(agent_id);
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddObjectToObject(msg, "data");
	char	   *text;

	cJSON_AddStringToObject(msg, "type", "command_status");
	cJSON_AddStringToObject(data, "agent_id", agent_id);
	cJSON_AddStringToObject(data, "command_id", command_id);
	cJSON_AddStringToObject(data, "status", status);
	text = cJSON_PrintUnformatted(msg);
	cJSON_Delete(msg);
	if (text)
		ui_deliver(agent_id, a ? a->group : live_group(agent_id), "commands", text, strlen(text));
	free(text);
}

/* A command was written to one of our agents: it is "sent". */
static void
ui_on_command_sent(struct agent *a, const char *command_id)
{
	if (clients)
		ui_command_status(a->agent_id, command_id, "sent");
}

/* NOTIFY from the extension: status changes, command results, alerts. */
static void
ui_on_notify(const char *channel, const char *payload)
{
	const char *type = NULL;
	cJSON	   *p, *msg;
	char	   *text;
	const char *agent;

	if (!clients)
		return;
	if (!strcmp(channel, "pankha_command"))
	{
		/* queued (send_command's NOTIFY: agent_id, command_id) */
		p = cJSON_Parse(payload);
		agent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id"));
		{
			const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "command_id"));

			if (agent && id)
				ui_command_status(agent, id, "queued");
		}
		cJSON_Delete(p);
		return;
	}
	if (!strcmp(channel, "pankha_agent_status"))
		type = "agent_status";
	else if (!strcmp(channel, "pankha_command_result"))
		type = "command_result";
	else if (!strcmp(channel, "pankha_alert"))
		type = "alert";
	else if (!strcmp(channel, "pankha_audit"))
		type = "audit";
	else
		return;
	p = cJSON_Parse(payload);
	if (!p)
	{
		blog("warn", "notify", "%s payload is not JSON", channel);
		return;
	}
	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", type);
	agent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id"));
	cJSON_AddItemToObject(msg, "data", p);
	text = cJSON_PrintUnformatted(msg);
	if (text)
	{
		if (!strcmp(type, "alert"))
			ui_deliver(NULL, NULL, "alerts", text, strlen(text));
		else if (!strcmp(type, "audit"))
		{
			/* admins only: handle_subscribe refuses the topic to the others */
			struct topic *t = topic_find("audit");

			srv.m.audit_received++;
			for (int i = 0; t && i < t->nsubs; i++)
				if (role_allows(t->subs[i]->role, ROLE_ADMIN))
					ui_send(t->subs[i], text, strlen(text));
		}
		else if (agent && !strcmp(type, "command_result"))
		{
			/* the final status (acked, failed, expired, dead), then the result */
			struct agent *a = agent_find(agent);
			const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "command_id"));
			const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "status"));

			if (id && status)
				ui_command_status(agent, id, status);
			ui_deliver(agent, a ? a->group : live_group(agent), "commands", text, strlen(text));
		}
		else if (agent)
		{
			struct agent *a = agent_find(agent);

			ui_broadcast(agent, a ? a->group : live_group(agent), text, strlen(text));
		}
	}
	free(text);
	cJSON_Delete(msg);
}

/* Register with the database and the credentials; called before db_init(). */
int
ui_init(void)
{
	if (db_listen("pankha_agent_status", ui_on_notify) ||
		db_listen("pankha_command", ui_on_notify) ||
		agent_commands_on_sent(ui_on_command_sent) ||
		db_listen("pankha_command_result", ui_on_notify) ||
		db_listen("pankha_alert", ui_on_notify) ||
		db_listen("pankha_audit", ui_on_notify) ||
		live_init() ||
		creds_subscribe(on_credential_changed) ||
		ingest_on_stored(ui_any, ui_broadcast))
		return -1;
	return 0;
}

/* A topic the bridge knows how to fill. */
static bool
valid_topic(const char *t)
{
	size_t		n = strlen(t);

	if (!strcmp(t, "global") || !strcmp(t, "alerts") || !strcmp(t, "commands") ||
		!strcmp(t, "audit"))
		return true;
	if (!strncmp(t, "agents.", 7) && n > 7 && n <= 7 + 64)
		return true;
	if (!strncmp(t, "groups.", 7) && n > 7 && n <= 7 + 64)
		return true;
	return false;
}

static void
handle_subscribe(struct ui_client *c, cJSON *data, bool subscribe)
{
	cJSON	   *topics = cJSON_GetObjectItemCaseSensitive(data, "topics");
	cJSON	   *t, *reply, *list;

	if (!cJSON_IsArray(topics))
	{
		ui_error(c, "invalid_message", "data.topics: missing or not an array");
		return;
	}
	cJSON_ArrayForEach(t, topics)
	{
		if (!cJSON_IsString(t) || !valid_topic(t->valuestring))
		{
			ui_error(c, "invalid_topic",
					 "topics are \"global\", \"alerts\", \"commands\", \"audit\", \"agents.<id>\" or \"groups.<name>\"");
			return;
		}
		if (subscribe && !strcmp(t->valuestring, "audit") && !role_allows(c->role, ROLE_ADMIN))
		{
			ui_error(c, "forbidden", "the \"audit\" topic needs the admin role");
			return;
		}
	}
	cJSON_ArrayForEach(t, topics)
	{
		if (subscribe && !subscribed(c, t->valuestring))
		{
			char	  **n;

			if (c->ntopics >= UI_MAX_TOPICS)
			{
				ui_error(c, "too_many_topics", "at most 256 topics per connection");
				break;
			}
			n = realloc(c->topics, (c->ntopics + 1) * sizeof(*n));
			if (!n)
				break;
			c->topics = n;
			if (!(c->topics[c->ntopics] = strdup(t->valuestring)))
				break;
			if (topic_add(t->valuestring, c))
			{
				free(c->topics[c->ntopics]);
				break;
			}
			c->ntopics++;
		}
		else if (!subscribe)
		{
			for (int i = 0; i < c->ntopics; i++)
				if (!strcmp(c->topics[i], t->valuestring))
				{
					topic_remove(c->topics[i], c);
					free(c->topics[i]);
					c->topics[i] = c->topics[--c->ntopics];
					break;
				}
		}
	}
	reply = cJSON_CreateObject();
	cJSON_AddStringToObject(reply, "type", subscribe ? "subscribed" : "unsubscribed");
	list = cJSON_AddArrayToObject(cJSON_AddObjectToObject(reply, "data"), "topics");
	for (int i = 0; i < c->ntopics; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(c->topics[i]));
	ui_send_json(c, reply);
}

/* What a command query needs to answer its client. */
struct ui_request
{
	struct ui_client *client;
	char	   *request_id;		/* echoed back, may be NULL */
	char	   *agent_id;
};

/* Free a finished request and drop its hold on the client. */
static void
ui_request_done(struct ui_request *r)
{
	struct ui_client *c = r->client;

	free(r->request_id);
	free(r->agent_id);
	free(r);
	ui_release(c);
}

static void
command_done(struct db_query *q, PGresult *res)
{
	struct ui_request *r = q->arg;
	struct ui_client *c = r->client;

	if (c->ws.wsi)
	{
		cJSON	   *msg = cJSON_CreateObject();
		cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			cJSON_AddStringToObject(msg, "type", "command_sent");
			cJSON_AddStringToObject(data, "command_id", PQgetvalue(res, 0, 0));
		}
		else
		{
			const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			cJSON_AddStringToObject(msg, "type", "error");
			cJSON_AddStringToObject(data, "code", "command_refused");
			cJSON_AddStringToObject(data, "message", m ? m : "command not queued");
		}
		cJSON_AddStringToObject(data, "agent_id", r->agent_id);
		if (r->request_id)
			cJSON_AddStringToObject(data, "request_id", r->request_id);
		ui_send_json(c, msg);
	}
	ui_request_done(r);
}

/* {"type":"command","data":{"agent_id","command_type","parameters","priority","ttl_seconds"}} */
static void
handle_command(struct ui_client *c, cJSON *data)
{
	const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "request_id"));
	struct command_args a;
	struct action_error err;
	struct ui_request *r;
	struct db_query *q;

	if (action_check_command(data, "data.", NULL, &a, &err))
	{
		ui_error(c, "invalid_message", err.message);
		command_args_free(&a);
		return;
	}
	r = calloc(1, sizeof(*r));
	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.send_command($1, $2, $3::jsonb, $4, $5::interval, $6)",
					 command_done, r);
	if (q)
		q->once = true;			/* never a second command row (db.c) */
	if (!r || !q || !(r->agent_id = strdup(a.agent_id)) ||
		(rid && !(r->request_id = strdup(rid))) ||
		db_query_param(q, a.agent_id, strlen(a.agent_id)) ||
		db_query_param(q, a.command_type, strlen(a.command_type)) ||
		db_query_param(q, a.parameters, strlen(a.parameters)) ||
		db_query_param(q, a.priority, strlen(a.priority)) ||
		db_query_param(q, a.ttl, strlen(a.ttl)) ||
		db_query_param(q, c->user, strlen(c->user)))
	{
		if (q)
			db_query_free(q);
		if (r)
		{
			free(r->agent_id);
			free(r->request_id);
		}
		free(r);
		command_args_free(&a);
		ui_error(c, "internal_error", "out of memory");
		return;
	}
	command_args_free(&a);
	r->client = c;
	c->refs++;
	db_submit(q);
}

static void
setting_done(struct db_query *q, PGresult *res)
{
	struct ui_request *r = q->arg;
	struct ui_client *c = r->client;

	if (c->ws.wsi)
	{
		cJSON	   *msg = cJSON_CreateObject();
		cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			cJSON_AddStringToObject(msg, "type", "setting_changed");
			cJSON_AddNumberToObject(data, "agents_updated", atoi(PQgetvalue(res, 0, 0)));
		}
		else
		{
			const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			cJSON_AddStringToObject(msg, "type", "error");
			cJSON_AddStringToObject(data, "code", "setting_refused");
			cJSON_AddStringToObject(data, "message", m ? m : "setting not changed");
		}
		if (r->request_id)
			cJSON_AddStringToObject(data, "request_id", r->request_id);
		ui_send_json(c, msg);
	}
	ui_request_done(r);
}

/* {"type":"set_setting","data":{"scope":"global|group:<name>|agent:<id>","key":...,"value":...}} */
static void
handle_setting(struct ui_client *c, cJSON *data)
{
	const char *rid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "request_id"));
	struct setting_args a;
	struct action_error err;
	struct ui_request *r;
	struct db_query *q;

	if (action_check_setting(data, "data.", &a, &err))
	{
		ui_error(c, "invalid_message", err.message);
		setting_args_free(&a);
		return;
	}
	r = calloc(1, sizeof(*r));
	q = db_query_new(LANE_GENERAL, "SELECT pankha.set_setting($1, $2, $3::jsonb, $4)", setting_done, r);
	if (!r || !q || (rid && !(r->request_id = strdup(rid))) ||
		db_query_param(q, a.scope, strlen(a.scope)) || db_query_param(q, a.key, strlen(a.key)) ||
		db_query_param(q, a.value, strlen(a.value)) || db_query_param(q, c->user, strlen(c->user)))
	{
		if (q)
			db_query_free(q);
		if (r)
			free(r->request_id);
		free(r);
		setting_args_free(&a);
		ui_error(c, "internal_error", "out of memory");
		return;
	}
	setting_args_free(&a);
	r->client = c;
	c->refs++;
	db_submit(q);
}

/* What an API message's query needs to answer: its client, type and request_id. */
struct ui_api_request
{
	struct ui_client *client;
	char		type[40];
	cJSON	   *request_id;		/* the client's, any JSON value; may be NULL */
};

/*
 * The answer of an API message: {"type":"<type>_result","request_id",
 * "data": the function's result}, or an error frame with the same
 * request_id whose data has code (as over HTTP), message, field, and the
 * SQLSTATE.
 */
static void
api_message_done(struct db_query *q, PGresult *res)
{
	struct ui_api_request *r = q->arg;
	struct ui_client *c = r->client;

	if (c->ws.wsi)
	{
		cJSON	   *msg = cJSON_CreateObject();

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
			!PQgetisnull(res, 0, 0))
		{
			char		type[48];

			snprintf(type, sizeof(type), "%s_result", r->type);
			cJSON_AddStringToObject(msg, "type", type);
			if (r->request_id)
				cJSON_AddItemToObject(msg, "request_id", cJSON_Duplicate(r->request_id, true));
			cJSON_AddItemToObject(msg, "data", cJSON_Parse(PQgetvalue(res, 0, 0)));
		}
		else
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
			const char *field = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
			cJSON	   *data;

			cJSON_AddStringToObject(msg, "type", "error");
			if (r->request_id)
				cJSON_AddItemToObject(msg, "request_id", cJSON_Duplicate(r->request_id, true));
			data = cJSON_AddObjectToObject(msg, "data");
			cJSON_AddStringToObject(data, "code",
									api_error_code(api_error_status(state, db_error_is_data(res))));
			cJSON_AddStringToObject(data, "message", m ? m : "database error");
			if (field && *field)
				cJSON_AddStringToObject(data, "field", field);
			else
				cJSON_AddNullToObject(data, "field");
			if (state)
				cJSON_AddStringToObject(data, "sqlstate", state);
			if (r->request_id)
				cJSON_AddItemToObject(data, "request_id", cJSON_Duplicate(r->request_id, true));
		}
		ui_send_json(c, msg);
	}
	cJSON_Delete(r->request_id);
	free(r);
	ui_release(c);
}

/* An API message: its data is the args of the row's function (docs/api-functions.md). */
static void
handle_api_message(struct ui_client *c, const char *type, const char *sql, bool once, cJSON *data,
				   cJSON *request_id)
{
	struct ui_api_request *r = calloc(1, sizeof(*r));
	char	   *args = data ? cJSON_PrintUnformatted(data) : strdup("{}");
	struct db_query *q = r ? db_query_new(LANE_GENERAL, sql, api_message_done, r) : NULL;

	if (q)
		q->once = once;			/* an operator's message changes state: not twice (db.c) */

	if (!r || !args || !q ||
		(request_id && !(r->request_id = cJSON_Duplicate(request_id, true))) ||
		db_query_param(q, c->user, strlen(c->user)) ||
		db_query_param(q, c->role, strlen(c->role)) ||
		db_query_param(q, args, strlen(args)))
	{
		if (q)
			db_query_free(q);
		if (r)
			cJSON_Delete(r->request_id);
		free(r);
		free(args);
		ui_error(c, "internal_error", "out of memory");
		return;
	}
	free(args);
	snprintf(r->type, sizeof(r->type), "%s", type);
	r->client = c;
	c->refs++;
	db_submit(q);
}

static void
handle_subscribe_msg(struct ui_client *c, cJSON *data)
{
	handle_subscribe(c, data, true);
}

static void
handle_unsubscribe_msg(struct ui_client *c, cJSON *data)
{
	handle_subscribe(c, data, false);
}

static void
handle_ping(struct ui_client *c, cJSON *data)
{
	metrics_note_ping(false);
	ui_send(c, "{\"type\":\"pong\"}", 15);
}

/*
 * The messages a dashboard may send: a new one is a row.  min_role is
 * the least role of the token (else "forbidden"); with data_object the
 * message's "data" must be an object (else "invalid_message").  A row
 * made with UI_API calls the extension's function with data as its args
 * and answers "<type>_result" (or "error") with the message's request_id.
 */
#define UI_API(type, role, fn) \
	{type, role, false, NULL, "SELECT pankha." fn "($1, $2, $3::jsonb)::text"}

static const struct
{
	const char *type;
	enum role	min_role;
	bool		data_object;
	void		(*handle) (struct ui_client *c, cJSON *data);
	const char *sql;			/* UI_API rows */
}			ui_messages[] = {
	{"subscribe", ROLE_VIEWER, false, handle_subscribe_msg},
	{"unsubscribe", ROLE_VIEWER, false, handle_unsubscribe_msg},
	{"ping", ROLE_VIEWER, false, handle_ping},
	/* DESIGN.md's: answered command_sent / setting_changed */
	{"command", ROLE_OPERATOR, true, handle_command},
	{"set_setting", ROLE_OPERATOR, true, handle_setting},
	/* docs/api-functions.md's */
	UI_API("fleet", ROLE_VIEWER, "api_fleet"),
	UI_API("agent", ROLE_VIEWER, "api_agent"),
	UI_API("history", ROLE_VIEWER, "api_history"),
	UI_API("command_get", ROLE_VIEWER, "api_command"),
	UI_API("send_command", ROLE_OPERATOR, "api_send_command"),
	UI_API("assign_profile", ROLE_OPERATOR, "api_profile_assign"),
	UI_API("apply_profile", ROLE_OPERATOR, "api_profile_apply"),
	UI_API("emergency_stop", ROLE_OPERATOR, "api_emergency_stop"),
	UI_API("restore_auto", ROLE_OPERATOR, "api_restore_auto"),
	UI_API("setting", ROLE_OPERATOR, "api_setting_set"),
	UI_API("alert_ack", ROLE_OPERATOR, "api_alert_ack"),
	UI_API("alert_silence", ROLE_OPERATOR, "api_alert_silence"),
	UI_API("alert_unsilence", ROLE_OPERATOR, "api_alert_unsilence"),
};

static void
ui_message(struct ui_client *c, const char *text, size_t len)
{
	cJSON	   *root = json_parse(text, len);
	const char *t;
	cJSON	   *data;

	if (!root || !cJSON_IsObject(root))
	{
		ui_error(c, "malformed_json", root ? "message is not a JSON object" :
				 "message is not valid JSON");
		cJSON_Delete(root);
		return;
	}
	t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "type"));
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!t)
	{
		ui_error(c, "invalid_message", "type: missing or not a string");
		cJSON_Delete(root);
		return;
	}
	for (size_t i = 0; i < sizeof(ui_messages) / sizeof(ui_messages[0]); i++)
	{
		if (strcmp(t, ui_messages[i].type))
			continue;
		if ((ui_messages[i].data_object || (ui_messages[i].sql && data && !cJSON_IsNull(data))) &&
			!cJSON_IsObject(data))
			ui_error(c, "invalid_message", "data: missing or not an object");
		else if (!role_allows(c->role, ui_messages[i].min_role))
		{
			struct sbuf m = {0};

			sbuf_printf(&m, "\"%s\" needs the %s role (this token has %s)", t,
						role_name(ui_messages[i].min_role), c->role);
			ui_error(c, "forbidden", m.failed ? "not allowed" : m.data);
			sbuf_free(&m);
		}
		else if (ui_messages[i].sql)
			handle_api_message(c, t, ui_messages[i].sql,
							   ui_messages[i].min_role >= ROLE_OPERATOR, data,
							   cJSON_GetObjectItemCaseSensitive(root, "request_id"));
		else
			ui_messages[i].handle(c, data);
		cJSON_Delete(root);
		return;
	}
	{
		struct sbuf m = {0};

		sbuf_printf(&m, "unknown message type \"%.64s\"", t);
		ui_error(c, "unknown_type", m.failed ? "unknown message type" : m.data);
		sbuf_free(&m);
	}
	cJSON_Delete(root);
}

/* The token of a browser: a subprotocol entry other than "pankha-ui". */
static char *
subprotocol_token(struct lws *wsi)
{
	int			n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
	char	   *buf, *save = NULL, *tok, *found = NULL;

	if (n <= 0)
		return NULL;
	buf = malloc((size_t) n + 1);
	if (!buf)
		return NULL;
	if (lws_hdr_copy(wsi, buf, n + 1, WSI_TOKEN_PROTOCOL) < 0)
	{
		free(buf);
		return NULL;
	}
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (strcmp(tok, "pankha-ui") && strcmp(tok, "pankha"))
		{
			found = strdup(!strncmp(tok, "bearer.", 7) ? tok + 7 : tok);
			break;
		}
	free(buf);
	return found;
}

/* Decide on an upgrade to /ws/ui once ws.c admitted it (see agent_filter). */
static int
ui_filter(struct lws *wsi, const char *peer, struct ws_conn **conn)
{
	char	   *token = NULL;
	struct cred_grant grant;
	enum cred_verdict verdict;
	struct ui_client *c;

	if (http_bearer_token(wsi, &token) < 0)
		return ws_refuse(wsi, 500, "out of memory");
	if (!token)
	{
		int			len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
		char	   *buf = len > 0 ? malloc((size_t) len + 1) : NULL;
		const char *v;

		if (buf && (v = lws_get_urlarg_by_name(wsi, "token=", buf, len + 1)) != NULL)
			token = strdup(v);
		free(buf);
	}
	if (!token)
		token = subprotocol_token(wsi);
	if (!token)
	{
		srv.m.handshakes_refused++;
		return ws_refuse(wsi, 401, "dashboard token missing");
	}
	verdict = creds_check(CRED_UI, NULL, token, peer, &grant);
	free(token);
	if (verdict == CRED_OK)
	{
		unsigned	status;
		const char *why = over_cap(grant.selector, peer, &status);

		if (why)
		{
			srv.m.ui_refused_caps++;
			blog("info", "ui_refused", "dashboard %s from %s: %s", grant.owner, peer, why);
			return ws_refuse(wsi, status, why);
		}
	}
	if (verdict == CRED_UNAVAILABLE)
		return ws_refuse(wsi, 503, "database unavailable");
	if (verdict == CRED_REFUSED)
	{
		blog("info", "ui_refused", "dashboard from %s: bad token", peer);
		srv.m.handshakes_refused++;
		return ws_refuse(wsi, 401, "invalid dashboard token");
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return ws_refuse(wsi, 500, "out of memory");
	memcpy(c->user, grant.owner, sizeof(c->user));
	memcpy(c->role, grant.role, sizeof(c->role));
	memcpy(c->selector, grant.selector, sizeof(c->selector));
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	memcpy(c->digest, grant.digest, sizeof(c->digest));
	c->refs = 1;
	admit(c);
	*conn = &c->ws;
	return 0;
}

/* The upgrade completed: say who the dashboard is. */
static int
ui_established(struct ws_conn *conn)
{
	struct ui_client *c = lws_container_of(conn, struct ui_client, ws);
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

	c->next = clients;
	if (clients)
		clients->prev = c;
	clients = c;
	nclients++;
	if (srv.cfg.ui_idle_timeout_s > 0 && !idle_armed)
	{
		idle_armed = true;
		timer_schedule(&idle_timer, idle_cb, LWS_US_PER_SEC);
	}
	c->tokens_at = c->dropped_since = now_us();
	c->tokens = srv.cfg.ui_rate_burst;
	cJSON_AddStringToObject(msg, "type", "connected");
	cJSON_AddStringToObject(data, "user", c->user);
	cJSON_AddStringToObject(data, "role", c->role);
	cJSON_AddStringToObject(data, "bridge", srv.bridge_id);
	cJSON_AddNumberToObject(data, "rate_per_second", srv.cfg.ui_rate_per_s);
	cJSON_AddNumberToObject(data, "rate_burst", srv.cfg.ui_rate_burst);
	ui_send_json(c, msg);
	return 0;
}

/*
 * Charge one message to the connection's bucket (--ui-rate-limit per
 * second, --ui-rate-burst deep); false when it is over.  Charged before
 * anything is parsed, so a flood costs the bridge a clock read each.
 */
static bool
ui_rate_allow(struct ui_client *c)
{
	lws_usec_t	now = now_us();
	double		rate = srv.cfg.ui_rate_per_s;
	double		burst = srv.cfg.ui_rate_burst > 0 ? srv.cfg.ui_rate_burst : 1;

	if (rate <= 0)
		return true;
	c->tokens += (double) (now - c->tokens_at) * rate / LWS_US_PER_SEC;
	if (c->tokens > burst)
		c->tokens = burst;
	c->tokens_at = now;
	if (c->tokens < 1.0)
		return false;
	c->tokens -= 1.0;
	return true;
}

static void
ui_ws_message(struct ws_conn *conn, const char *text, size_t len, bool binary)
{
	struct ui_client *c = lws_container_of(conn, struct ui_client, ws);

	if (!ui_rate_allow(c))
	{
		lws_usec_t	now = now_us();
		int			limit = srv.cfg.ui_rate_per_s < 10 ? 10 : srv.cfg.ui_rate_per_s;

		srv.m.ui_rate_limited++;
		if (now - c->dropped_since >= 60 * LWS_US_PER_SEC)
		{
			c->dropped_since = now;
			c->dropped = 0;
		}
		ui_error(c, "rate_limited", "too many messages per second; this one was dropped");
		if (++c->dropped > limit)
		{
			srv.m.ui_closed_rate_limit++;
			blog("warn", "ui_rate_limit", "dashboard %s from %s floods past --ui-rate-limit: closed",
				 c->user, c->peer);
			ui_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded");
		}
		return;
	}
	if (binary)
		ui_error(c, "invalid_message", "binary frames are not accepted");
	else
		ui_message(c, text, len);
}

static void
ui_closed(struct ws_conn *conn)
{
	struct ui_client *c = lws_container_of(conn, struct ui_client, ws);

	if (c->prev)
		c->prev->next = c->next;
	else if (clients == c)
		clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nclients--;
	metrics_note_close(false, c->ws.close_code);
	unadmit(c);
	for (int i = 0; i < c->ntopics; i++)
		topic_remove(c->topics[i], c);
	ui_release(c);
}

static void
ui_discard(struct ws_conn *conn)
{
	struct ui_client *c = lws_container_of(conn, struct ui_client, ws);

	unadmit(c);
	ui_release(c);
}

/* The send queue overflowed: the dashboard does not read. */
static void
ui_dropped(struct ws_conn *conn)
{
	struct ui_client *c = lws_container_of(conn, struct ui_client, ws);

	srv.m.ui_dropped_slow++;
	blog("warn", "ui_dropped", "dashboard %s does not read; dropped", c->user);
}

const struct ws_endpoint ui_ws_endpoint = {
	.path = "/ws/ui",
	.what = "a dashboard",
	.slow_reason = "too slow",
	.filter = ui_filter,
	.established = ui_established,
	.message = ui_ws_message,
	.closed = ui_closed,
	.discard = ui_discard,
	.dropped = ui_dropped,
	.own_budget = true,
};
