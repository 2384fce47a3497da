/*
 * agents.c - agent connections: their lifetime, the by-id table of the
 * live ones, their history, and replacement.
 *
 * A struct agent is made by the handshake (agent_new), enters the table
 * when its upgrade completes (agent_open: an older connection of the same
 * agent is closed with 4000 "replaced"), and leaves it when its socket
 * closes (agent_gone); it is freed when the last query or frame holding
 * it lets go.  Each connection is recorded in pankha.connections
 * (connection_opened, then connection_closed with its close code and
 * counts); once its id is known, the modules that registered with
 * agents_on_opened() are told.  A NOTIFY pankha_agent saying a newer
 * connection opened on another bridge closes the one here with 4000, and
 * a changed credential (credentials.c) closes the connections it no
 * longer lets in with 4001.
 */
#include "agents.h"
#include "db.h"

#include <string.h>

/* Agents by id (live connections only), and every live connection. */
static struct agent **table;
static size_t table_size;
static size_t table_count;
static struct agent *all_head;
static int	live_count;

#define MAX_OPENED_HOOKS 4
static agent_opened_fn opened_hooks[MAX_OPENED_HOOKS];
static int	nopened;

/* ---------------------------------------------------------------- table */

static unsigned int
hash_id(const char *s)
{
	unsigned int h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char) *s++) * 16777619u;
	return h;
}

static bool
table_grow(void)
{
	size_t		nsize = table_size ? table_size * 2 : 1024;
	struct agent **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return false;
	for (size_t i = 0; i < table_size; i++)
	{
		struct agent *a = table[i];

		while (a)
		{
			struct agent *next = a->hash_next;
			size_t		h = hash_id(a->agent_id) & (nsize - 1);

			a->hash_next = nt[h];
			nt[h] = a;
			a = next;
		}
	}
	free(table);
	table = nt;
	table_size = nsize;
	return true;
}

/* The live connection of agent_id here, or NULL. */
struct agent *
agent_find(const char *agent_id)
{
	struct agent *a;

	if (!table_size || !agent_id)
		return NULL;
	for (a = table[hash_id(agent_id) & (table_size - 1)]; a; a = a->hash_next)
		if (!strcmp(a->agent_id, agent_id))
			return a;
	return NULL;
}

static bool
table_insert(struct agent *a)
{
	size_t		h;

	if (table_count + 1 > table_size && !table_grow())
		return false;
	h = hash_id(a->agent_id) & (table_size - 1);
	a->hash_next = table[h];
	table[h] = a;
	table_count++;
	return true;
}

static void
table_remove(struct agent *a)
{
	struct agent **p;

	if (!table_size)
		return;
	for (p = &table[hash_id(a->agent_id) & (table_size - 1)]; *p; p = &(*p)->hash_next)
		if (*p == a)
		{
			*p = a->hash_next;
			a->hash_next = NULL;
			table_count--;
			return;
		}
}

int
agents_count(void)
{
	return live_count;
}

/* The first of every live connection (then a->all_next). */
struct agent *
agents_first(void)
{
	return all_head;
}

/* Drop a reference; the last one frees the agent. */
void
agent_release(struct agent *a)
{
	if (--a->refs > 0)
		return;
	outq_clear(&a->ws.out);
	free(a->ws.rx);
	free(a->group);
	free(a->settings);
	free(a->agent_id);
	free(a);
}

/* ---------------------------------------------------------------- output */

/* Queue a message to an agent (ws.c drops a client that does not read). */
void
agent_send(struct agent *a, const char *text, size_t len, bool is_command)
{
	ws_send(&a->ws, text, len, is_command);
}

/* Send a cJSON message and free it. */
void
agent_send_json(struct agent *a, cJSON *msg, bool is_command)
{
	ws_send_json(&a->ws, msg, is_command);
}

/* {"type":"error","data":{"code":...,"message":...[,"seq":N]}} */
void
agent_send_error(struct agent *a, const char *code, const char *message, int64_t seq)
{
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

	srv.m.messages_invalid += strcmp(code, "invalid_frame") ? 1 : 0;
	cJSON_AddStringToObject(msg, "type", "error");
	cJSON_AddStringToObject(data, "code", code);
	cJSON_AddStringToObject(data, "message", message);
	if (seq >= 0)
		cJSON_AddNumberToObject(data, "seq", (double) seq);
	agent_send_json(a, msg, false);
}

/* Close an agent's connection with code and reason (from anywhere). */
void
agent_close(struct agent *a, int code, const char *reason)
{
	ws_close(&a->ws, code, reason);
}

/* ---------------------------------------------------------------- history */

/*
 * Connections are recorded in batches: every connection opened (closed)
 * since the last call goes into one pankha.connections_opened
 * (connections_closed) call, one transaction.  A commit per connection
 * made a connect ramp of 19,000 agents queue 19,000 commits, each waiting
 * for its WAL flush and the NOTIFY queue's lock, ahead of every other
 * general query (commands waited seconds behind them).  Every recording
 * query goes to one connection (the key CONN_KEY), whose queue keeps an
 * agent's open before its close and before a newer connection's open; one
 * batch of each kind is in flight at a time, so the next grows meanwhile.
 * A batch that fails as a whole is recorded again one connection at a
 * time, each in a batch of one through the same builder.
 */
#define BATCH_MAX 1000
#define CONN_KEY "pankha.connections"

struct pending
{
	struct agent **list;
	size_t		count;
	size_t		cap;
	struct btimer timer;
	bool		armed;
	bool		in_flight;
};

/* A batch sent: its agents, in the order of the arrays. */
struct conn_batch
{
	size_t		n;
	struct agent **agents;
	bool		single;			/* a failed batch's agent, recorded alone */
};

static struct pending opens, closes;

static void opened(struct agent *a, const char *id, const char *group, const char *settings);
static void record_opened_one(struct agent *a);
static void record_closed_one(struct agent *a);

/* Queue a (referenced) agent for the next batch of p, flushed by cb. */
static void
pending_add(struct pending *p, struct agent *a, sul_cb_t cb)
{
	if (p->count == p->cap)
	{
		size_t		ncap = p->cap ? p->cap * 2 : 256;
		struct agent **n = realloc(p->list, ncap * sizeof(*n));

		if (!n)
		{
			/* no memory for the batch: record this one alone */
			if (p == &opens)
				record_opened_one(a);
			else
				record_closed_one(a);
			return;
		}
		p->list = n;
		p->cap = ncap;
	}
	a->refs++;
	p->list[p->count++] = a;
	if (!p->armed && !p->in_flight)
	{
		p->armed = true;
		timer_schedule(&p->timer, cb, 1);
	}
}

/* The next batch of p (at most BATCH_MAX, oldest first); NULL when none or no memory. */
static struct conn_batch *
pending_take(struct pending *p)
{
	struct conn_batch *c;
	size_t		n = p->count < BATCH_MAX ? p->count : BATCH_MAX;

	p->armed = false;
	if (!n || p->in_flight || !(c = calloc(1, sizeof(*c))))
		return NULL;
	if (!(c->agents = malloc(n * sizeof(*c->agents))))
	{
		free(c);
		return NULL;
	}
	memcpy(c->agents, p->list, n * sizeof(*c->agents));
	memmove(p->list, p->list + n, (p->count - n) * sizeof(*p->list));
	p->count -= n;
	c->n = n;
	return c;
}

/* A batch's query completed: release its agents, send the next batch. */
static void
batch_finish(struct pending *p, struct conn_batch *c, sul_cb_t cb)
{
	for (size_t i = 0; i < c->n; i++)
		agent_release(c->agents[i]);
	free(c->agents);
	free(c);
	p->in_flight = false;
	if (p->count && !p->armed)
	{
		p->armed = true;
		timer_schedule(&p->timer, cb, 1);
	}
}

static void closes_cb(lws_sorted_usec_list_t *sul);
static void opens_cb(lws_sorted_usec_list_t *sul);
static struct db_query *opens_query(struct conn_batch *c);
static struct db_query *closes_query(struct conn_batch *c);

/*
 * A failed batch's agent alone: a batch of one through the same builder
 * (c->single: its outcome is final, and it is not p's batch in flight).
 */
static void
record_one(struct agent *a, bool open)
{
	struct conn_batch *c = calloc(1, sizeof(*c));
	struct db_query *q = NULL;

	if (c && (c->agents = malloc(sizeof(*c->agents))))
	{
		c->n = 1;
		c->single = true;
		c->agents[0] = a;
		a->refs++;
		q = open ? opens_query(c) : closes_query(c);
		if (q)
		{
			db_submit(q);
			return;
		}
		agent_release(a);
	}
	if (c)
		free(c->agents);
	free(c);
	if (open)
		opened(a, NULL, NULL, NULL);
	else
		blog("warn", "connections_closed", "agent %s: cannot record its close: no memory", a->agent_id);
}

static void
record_opened_one(struct agent *a)
{
	record_one(a, true);
}

static void
record_closed_one(struct agent *a)
{
	record_one(a, false);
}

/* A batch of one is done with; a pending batch lets the next one go. */
static void
batch_end(struct pending *p, struct conn_batch *c, sul_cb_t cb)
{
	if (!c->single)
	{
		batch_finish(p, c, cb);
		return;
	}
	agent_release(c->agents[0]);
	free(c->agents);
	free(c);
}

static void
closes_done(struct db_query *q, PGresult *res)
{
	struct conn_batch *c = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && c->single)
		blog("warn", "connection_closed", "agent %s: %s", c->agents[0]->agent_id,
			 PQresultErrorMessage(res));
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		blog("warn", "connections_closed", "%zu connections, recorded one by one: %s",
			 c->n, PQresultErrorMessage(res));
		for (size_t i = 0; i < c->n; i++)
			record_closed_one(c->agents[i]);
	}
	batch_end(&closes, c, closes_cb);
}

/* Append "{a,b,...}" of one counter per agent of c to b. */
static void
int_array(struct sbuf *b, struct conn_batch *c, int which)
{
	sbuf_puts(b, "{");
	for (size_t i = 0; i < c->n; i++)
	{
		struct agent *a = c->agents[i];
		unsigned long long v = 0;

		switch (which)
		{
			case 0: v = (unsigned long long) a->connection_id; break;
			case 1: v = (unsigned long long) (a->ws.close_code ? a->ws.close_code : 1006); break;
			case 2: v = a->frames_in; break;
			case 3: v = a->bytes_in; break;
			case 4: v = a->ws.frames_out; break;
			default: v = a->ws.bytes_out; break;
		}
		sbuf_printf(b, "%s%llu", i ? "," : "", v);
	}
	sbuf_puts(b, "}");
}

/* The connections_closed call recording c's closes; NULL: no memory. */
static struct db_query *
closes_query(struct conn_batch *c)
{
	struct sbuf arr[6] = {{0}}, reasons = {0};
	struct db_query *q;
	bool		failed;

	sbuf_text_array_begin(&reasons);
	for (size_t i = 0; i < c->n; i++)
		sbuf_text_array_elem(&reasons, c->agents[i]->ws.close_reason,
							 strlen(c->agents[i]->ws.close_reason));
	sbuf_text_array_end(&reasons, c->n);
	for (int k = 0; k < 6; k++)
		int_array(&arr[k], c, k);
	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.connections_closed($1::bigint[], $2::integer[], $3::text[], "
					 "$4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])",
					 closes_done, c);
	if (q)
		db_query_key(q, CONN_KEY);
	failed = !q || arr[0].failed || arr[1].failed ||
		db_query_param(q, arr[0].data, arr[0].len) ||
		db_query_param(q, arr[1].data, arr[1].len) ||
		db_query_param_sbuf(q, &reasons);
	for (int k = 2; k < 6 && !failed; k++)
		failed = arr[k].failed || db_query_param(q, arr[k].data, arr[k].len);
	for (int k = 0; k < 6; k++)
		sbuf_free(&arr[k]);
	sbuf_free(&reasons);
	if (failed && q)
		db_query_free(q);
	return failed ? NULL : q;
}

static void
closes_cb(lws_sorted_usec_list_t *sul)
{
	struct conn_batch *c = pending_take(&closes);
	struct db_query *q;

	if (!c)
		return;
	if (!(q = closes_query(c)))
	{
		for (size_t i = 0; i < c->n; i++)
			record_closed_one(c->agents[i]);
		batch_finish(&closes, c, closes_cb);
		return;
	}
	closes.in_flight = true;
	db_submit(q);
}

/* Record the end of a connection whose id is known. */
static void
record_closed(struct agent *a)
{
	pending_add(&closes, a, closes_cb);
}

/* Recorded (id) or not (id NULL): tell the modules, or close it. */
static void
opened(struct agent *a, const char *id, const char *group, const char *settings)
{
	if (!id)
	{
		agent_close(a, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "cannot record connection");
		return;
	}
	a->connection_id = strtoll(id, NULL, 10);
	if (group && !a->group)
		a->group = strdup(group);
	if (settings && !a->settings)
		a->settings = strdup(settings);
	if (a->closed)
		record_closed(a);
	else if (a->replaced_by > a->connection_id)
	{
		/* a newer connection on another bridge was announced first (L10) */
		agent_close(a, 4000, "replaced");
	}
	else
		for (int i = 0; i < nopened; i++)
			opened_hooks[i] (a);
}

static void
opens_done(struct db_query *q, PGresult *res)
{
	struct conn_batch *c = q->arg;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && (size_t) PQntuples(res) == c->n)
	{
		for (int r = 0; r < PQntuples(res); r++)
		{
			long		ord = strtol(PQgetvalue(res, r, 0), NULL, 10);
			struct agent *a;

			if (ord < 1 || (size_t) ord > c->n)
				continue;
			a = c->agents[ord - 1];
			if (!PQgetisnull(res, r, 4))
				blog("error", "connection_opened", "agent %s: %s: %s", a->agent_id,
					 PQgetvalue(res, r, 4), PQgetvalue(res, r, 5));
			opened(a, PQgetisnull(res, r, 1) ? NULL : PQgetvalue(res, r, 1),
				   PQgetisnull(res, r, 2) ? NULL : PQgetvalue(res, r, 2),
				   PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3));
		}
	}
	else if (c->single)
	{
		blog("error", "connection_opened", "agent %s: %s", c->agents[0]->agent_id,
			 PQresultErrorMessage(res));
		opened(c->agents[0], NULL, NULL, NULL);
	}
	else
	{
		blog("warn", "connections_opened", "%zu connections, recorded one by one: %s",
			 c->n, PQresultErrorMessage(res));
		for (size_t i = 0; i < c->n; i++)
			record_opened_one(c->agents[i]);
	}
	batch_end(&opens, c, opens_cb);
}

/* The connections_opened call recording c's connections; NULL: no memory. */
static struct db_query *
opens_query(struct conn_batch *c)
{
	struct sbuf ids = {0}, addrs = {0};
	struct db_query *q;

	sbuf_text_array_begin(&ids);
	sbuf_text_array_begin(&addrs);
	for (size_t i = 0; i < c->n; i++)
	{
		sbuf_text_array_elem(&ids, c->agents[i]->agent_id, strlen(c->agents[i]->agent_id));
		sbuf_text_array_elem(&addrs, c->agents[i]->remote, strlen(c->agents[i]->remote));
	}
	sbuf_text_array_end(&ids, c->n);
	sbuf_text_array_end(&addrs, c->n);
	q = db_query_new(LANE_GENERAL,
					 "SELECT ord, connection_id, group_name, settings::text, sqlstate, message "
					 "FROM pankha.connections_opened($1::text[], $2, $3::text[])",
					 opens_done, c);
	if (q)
	{
		q->once = true;			/* a second run would leave open rows behind */
		db_query_key(q, CONN_KEY);
	}
	if (!q || db_query_param_sbuf(q, &ids) ||
		db_query_param(q, srv.bridge_id, strlen(srv.bridge_id)) ||
		db_query_param_sbuf(q, &addrs))
	{
		if (q)
			db_query_free(q);
		q = NULL;
	}
	sbuf_free(&ids);
	sbuf_free(&addrs);
	return q;
}

static void
opens_cb(lws_sorted_usec_list_t *sul)
{
	struct conn_batch *c = pending_take(&opens);
	struct db_query *q;

	if (!c)
		return;
	if (!(q = opens_query(c)))
	{
		for (size_t i = 0; i < c->n; i++)
			record_opened_one(c->agents[i]);
		batch_finish(&opens, c, opens_cb);
		return;
	}
	opens.in_flight = true;
	db_submit(q);
}

/* ---------------------------------------------------------------- lifetime */

/* Call fn for each connection once it is recorded; -1 when full. */
int
agents_on_opened(agent_opened_fn fn)
{
	if (nopened >= MAX_OPENED_HOOKS)
		return -1;
	opened_hooks[nopened++] = fn;
	return 0;
}

/* A connection the handshake accepted, not yet established; NULL: no memory. */
struct agent *
agent_new(const char *agent_id, const char *selector, const char *peer)
{
	struct agent *a = calloc(1, sizeof(*a));

	if (!a || !(a->agent_id = strdup(agent_id)))
	{
		free(a);
		return NULL;
	}
	memcpy(a->selector, selector, sizeof(a->selector));
	snprintf(a->remote, sizeof(a->remote), "%s", peer);
	a->refs = 1;				/* the connection's */
	a->pending_ack = a->acked = -1;
	return a;
}

/*
 * The upgrade completed: replace an older connection of the agent, enter
 * the table and record the connection; -1 closes it.
 */
int
agent_open(struct agent *a)
{
	struct agent *old = agent_find(a->agent_id);

	if (old)
	{
		table_remove(old);
		agent_close(old, 4000, "replaced");
	}
	if (!table_insert(a))
		return -1;
	a->all_next = all_head;
	if (all_head)
		all_head->all_prev = a;
	all_head = a;
	live_count++;

	pending_add(&opens, a, opens_cb);
	blog("info", "agent_connected", "agent %s from %s", a->agent_id, a->remote);
	return 0;
}

/* The socket closed: out of the table, its end recorded, its reference dropped. */
void
agent_gone(struct agent *a)
{
	if (agent_find(a->agent_id) == a)
		table_remove(a);
	if (a->all_prev)
		a->all_prev->all_next = a->all_next;
	else if (all_head == a)
		all_head = a->all_next;
	if (a->all_next)
		a->all_next->all_prev = a->all_prev;
	a->all_next = a->all_prev = NULL;
	live_count--;
	a->closed = true;
	blog("info", "agent_closed", "agent %s code %d %s", a->agent_id,
		 a->ws.close_code, a->ws.close_reason);
	if (a->connection_id)
		record_closed(a);
	agent_release(a);
}

/*
 * NOTIFY pankha_agent: a newer connection of an agent connected here
 * opened on another bridge.  ("revoked" is handled through
 * pankha_credentials, credentials.c.)
 */
static void
on_agent_notify(const char *channel, const char *payload)
{
	cJSON	   *p = cJSON_Parse(payload);
	struct agent *a = agent_find(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id")));

	if (a)
	{
		const char *event = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "event"));
		const char *bridge = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "bridge"));
		cJSON	   *conn = cJSON_GetObjectItemCaseSensitive(p, "connection");

		if (event && !strcmp(event, "replaced") && bridge &&
			strcmp(bridge, srv.bridge_id) && cJSON_IsNumber(conn))
		{
			int64_t		newer = (int64_t) conn->valuedouble;

			if (a->connection_id && a->connection_id < newer)
				agent_close(a, 4000, "replaced");
			else if (!a->connection_id && newer > a->replaced_by)
			{
				/*
				 * Its own id is not known yet: whether that connection is
				 * newer than this one is decided once it is (L10).
				 */
				a->replaced_by = newer;
			}
		}
	}
	cJSON_Delete(p);
}

/*
 * A credential changed: close the agents it no longer lets in (selector
 * NULL, after a full reload: every agent is rechecked).
 */
static void
on_credential_changed(char kind, const char *agent_id, const char *selector)
{
	if (kind != CRED_AGENT)
		return;
	if (selector)
	{
		struct agent *a = agent_find(agent_id);

		if (a && !strcmp(a->selector, selector) &&
			!creds_still_valid(CRED_AGENT, a->selector, a->digest, a->agent_id, NULL))
			agent_close(a, 4001, "revoked");
		return;
	}
	for (struct agent *a = all_head; a; a = a->all_next)
		if (a->ws.wsi && !creds_still_valid(CRED_AGENT, a->selector, a->digest, a->agent_id, NULL))
			agent_close(a, 4001, "revoked");
}

/* Register with the database and the credentials; called before db_init(). */
int
agents_init(void)
{
	if (db_listen("pankha_agent", on_agent_notify) ||
		creds_subscribe(on_credential_changed))
		return -1;
	return 0;
}
