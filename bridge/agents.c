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

static void
closed_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		blog("warn", "connection_closed", "agent %s: %s", a->agent_id,
			 PQresultErrorMessage(res));
	agent_release(a);
}

/* Record the end of a connection whose id is known. */
static void
record_closed(struct agent *a)
{
	struct db_query *q;
	char		num[6][32];

	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.connection_closed($1::bigint, $2::integer, $3, "
					 "$4::bigint, $5::bigint, $6::bigint, $7::bigint)",
					 closed_done, a);
	if (!q)
		return;
	db_query_key(q, a->agent_id);	/* after its connection_opened, in order */
	snprintf(num[0], sizeof(num[0]), "%lld", (long long) a->connection_id);
	snprintf(num[1], sizeof(num[1]), "%d", a->ws.close_code ? a->ws.close_code : 1006);
	snprintf(num[2], sizeof(num[2]), "%llu", (unsigned long long) a->frames_in);
	snprintf(num[3], sizeof(num[3]), "%llu", (unsigned long long) a->bytes_in);
	snprintf(num[4], sizeof(num[4]), "%llu", (unsigned long long) a->ws.frames_out);
	snprintf(num[5], sizeof(num[5]), "%llu", (unsigned long long) a->ws.bytes_out);
	if (db_query_param(q, num[0], strlen(num[0])) ||
		db_query_param(q, num[1], strlen(num[1])) ||
		db_query_param(q, a->ws.close_reason, strlen(a->ws.close_reason)) ||
		db_query_param(q, num[2], strlen(num[2])) ||
		db_query_param(q, num[3], strlen(num[3])) ||
		db_query_param(q, num[4], strlen(num[4])) ||
		db_query_param(q, num[5], strlen(num[5])))
	{
		db_query_free(q);
		return;
	}
	a->refs++;
	db_submit(q);
}

static void
opened_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		a->connection_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (!PQgetisnull(res, 0, 1))
			a->group = strdup(PQgetvalue(res, 0, 1));
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
	else
	{
		blog("error", "connection_opened", "agent %s: %s", a->agent_id,
			 PQresultErrorMessage(res));
		agent_close(a, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "cannot record connection");
	}
	agent_release(a);
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
	struct db_query *q;

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

	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.connection_opened($1, $2, $3), pankha.agent_group($1)",
					 opened_done, a);
	if (q)
	{
		q->once = true;			/* a second run would leave an open row behind */
		db_query_key(q, a->agent_id);	/* before the close of this or a newer one */
	}
	if (!q || db_query_param(q, a->agent_id, strlen(a->agent_id)) ||
		db_query_param(q, srv.bridge_id, strlen(srv.bridge_id)) ||
		db_query_param(q, a->remote, strlen(a->remote)))
	{
		if (q)
			db_query_free(q);
		return -1;
	}
	a->refs++;
	db_submit(q);
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
