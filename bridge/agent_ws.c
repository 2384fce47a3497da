/*
 * agent_ws.c - the agent endpoint, /ws/agent.
 *
 * Handshake: the agent id and bearer token are checked against the
 * bridge's copy of the live credentials (credentials.c) before the upgrade
 * is accepted (401 otherwise); a connection whose token is revoked later is
 * closed with 4001.
 * Data frames from every agent are gathered for a few milliseconds and sent
 * to pankha.ingest_many in one call on the ingest lane; once committed each
 * agent gets an ack with its highest committed seq, and rejected frames an
 * error.  Commands are claimed when the extension's NOTIFY names an agent
 * connected here, and on every connect.  A newer connection of an agent
 * replaces the older one with close 4000, here or on another bridge.
 */
#include "bridge.h"

#include <math.h>
#include <string.h>

/* One data frame held until its batch commits. */
struct frame
{
	struct frame *next;
	struct agent *agent;		/* holds a reference */
	int64_t		seq;			/* -1 when the frame had none */
	bool		single;			/* send alone (its batch failed as a whole) */
	bool		requeued;		/* went back to the front: may commit after later frames */
	char	   *json;			/* the message as received */
	size_t		len;
	char	   *fwd;			/* the message for dashboards, or NULL */
	size_t		fwd_len;
};

/* A batch of frames in one ingest_many call. */
struct batch
{
	int			n;
	struct frame **frames;
};

/* Agents by id (live connections only), and every live connection. */
static struct agent **table;
static size_t table_size;
static size_t table_count;
static struct agent *all_head;
static int	live_count;

/* Frames waiting for a batch, and all frames held (waiting or in flight). */
static struct frame *pend_head, *pend_tail;
static size_t pend_count;
static size_t held_total;
static bool paused_all;
static lws_usec_t ingest_retry_at;
static struct btimer batch_sul;
static bool batch_sul_armed;

/* Agents whose waiting commands should be claimed. */
static struct agent **claim_list;
static size_t claim_count, claim_cap;
static struct btimer claim_sul;
static bool claim_sul_armed;
static bool claim_in_flight;

static struct btimer sweep_sul;
static bool sweep_started;
static lws_usec_t minute_started;

static void batcher(void);
static void schedule_batcher(lws_usec_t delay);
static void schedule_claim(void);
static void send_error(struct agent *a, const char *code, const char *message, int64_t seq);
static void update_pause(struct agent *a);

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

size_t
ingest_held(void)
{
	return held_total;
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
static void
send_json(struct agent *a, cJSON *msg, bool is_command)
{
	ws_send_json(&a->ws, msg, is_command);
}

/* {"type":"error","data":{"code":...,"message":...[,"seq":N]}} */
static void
send_error(struct agent *a, const char *code, const char *message, int64_t seq)
{
	cJSON	   *msg = cJSON_CreateObject();
	cJSON	   *data = cJSON_AddObjectToObject(msg, "data");

	srv.m.messages_invalid += strcmp(code, "invalid_frame") ? 1 : 0;
	cJSON_AddStringToObject(msg, "type", "error");
	cJSON_AddStringToObject(data, "code", code);
	cJSON_AddStringToObject(data, "message", message);
	if (seq >= 0)
		cJSON_AddNumberToObject(data, "seq", (double) seq);
	send_json(a, msg, false);
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
		else
		{
			struct db_query *s = db_query_new(LANE_GENERAL,
											  "SELECT pankha.effective_settings($1)::text",
											  settings_done, a);

			if (s && !db_query_param(s, a->agent_id, strlen(a->agent_id)))
			{
				a->refs++;
				db_submit(s);
			}
			else if (s)
				db_query_free(s);
		}
	}
	else
	{
		blog("error", "connection_opened", "agent %s: %s", a->agent_id,
			 PQresultErrorMessage(res));
		agent_close(a, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "cannot record connection");
	}
	agent_release(a);
}

/* ---------------------------------------------------------------- ingest */

/* Pause or resume reading from an agent according to what it holds. */
static void
update_pause(struct agent *a)
{
	bool		want_pause;

	if (!a->ws.wsi || a->ws.close_code)
		return;
	want_pause = paused_all || a->held >= srv.cfg.agent_held_frames;
	if (want_pause && !a->ws.rx_paused)
		ws_pause_rx(&a->ws, true);
	else if (!want_pause && a->ws.rx_paused && a->held <= srv.cfg.agent_held_frames / 2)
		ws_pause_rx(&a->ws, false);
}

/* Global backpressure: stop reading everyone while too much is held. */
static void
update_global_pause(void)
{
	bool		was = paused_all;

	if (!paused_all && held_total >= (size_t) srv.cfg.max_held_frames)
		paused_all = true;
	else if (paused_all && held_total <= (size_t) srv.cfg.max_held_frames / 2)
		paused_all = false;
	if (was == paused_all)
		return;
	if (paused_all)
	{
		srv.m.read_pauses++;
		blog("warn", "backpressure", "%zu frames held: reading paused", held_total);
	}
	else
		blog("info", "backpressure", "%zu frames held: reading resumed", held_total);
	for (struct agent *a = all_head; a; a = a->all_next)
		update_pause(a);
}

static void
frame_free(struct frame *f)
{
	struct agent *a = f->agent;

	a->held--;
	held_total--;
	if (f->requeued)
		a->requeued--;
	free(f->json);
	free(f->fwd);
	free(f);
	update_pause(a);
	agent_release(a);
}

/* Put frames back at the front of the waiting list, in order. */
static void
requeue_front(struct frame **frames, int n, bool single)
{
	for (int i = n - 1; i >= 0; i--)
	{
		struct frame *f = frames[i];

		f->single = single || f->single;
		if (!f->requeued)
		{
			f->requeued = true;
			f->agent->requeued++;
		}
		f->next = pend_head;
		pend_head = f;
		if (!pend_tail)
			pend_tail = f;
		pend_count++;
	}
}

/*
 * Send an ack to each agent of the batch that had frames with seq in it.
 * Batches run in order on the one ingest connection, so when this one
 * commits every earlier frame has too; the exception is a frame put back
 * at the front after a failure, which may commit after later frames: an
 * agent with such a frame outstanding is acked only once it holds nothing.
 * A re-sent frame gets the ack again.
 */
static void
send_acks(struct batch *b)
{
	static uint64_t batch_serial;
	bool	   *last = calloc(b->n ? b->n : 1, sizeof(bool));

	/* mark each agent's last frame in the batch: it is acked once, there */
	batch_serial++;
	for (int i = b->n - 1; last && i >= 0; i--)
	{
		struct agent *a = b->frames[i]->agent;

		if (a->ack_mark != batch_serial)
		{
			a->ack_mark = batch_serial;
			last[i] = true;
		}
	}
	for (int i = 0; i < b->n; i++)
	{
		struct agent *a = b->frames[i]->agent;

		if (b->frames[i]->seq >= 0)
			a->ack_due = true;
		if ((last ? last[i] : a->held == 1) && (a->requeued == 0 || a->held == 1) &&
			a->ack_due && a->pending_ack >= 0 && a->ws.wsi)
		{
			char		text[96];
			int			n = snprintf(text, sizeof(text),
									 "{\"type\":\"ack\",\"data\":{\"seq\":%lld}}",
									 (long long) a->pending_ack);

			agent_send(a, text, (size_t) n, false);
			a->acked = a->pending_ack;
			a->ack_due = false;
		}
		frame_free(b->frames[i]);
		b->frames[i] = NULL;
	}
	free(last);
}

static void
ingest_done(struct db_query *q, PGresult *res)
{
	struct batch *b = q->arg;
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK)
	{
		bool	   *seen = calloc(b->n, sizeof(bool));
		int			rows = PQntuples(res);

		for (int r = 0; r < rows; r++)
		{
			int			ord = atoi(PQgetvalue(res, r, 0));
			struct frame *f;

			if (ord < 1 || ord > b->n)
				continue;
			f = b->frames[ord - 1];
			if (seen)
				seen[ord - 1] = true;
			if (PQgetisnull(res, r, 2))
			{
				/* stored, or stored before: committed either way */
				srv.m.frames_committed++;
				if (PQgetvalue(res, r, 1)[0] == 't' && f->fwd)
					ui_broadcast(f->agent->agent_id, f->agent->group, f->fwd, f->fwd_len);
			}
			else
			{
				srv.m.frames_rejected++;
				if (f->agent->ws.wsi)
					send_error(f->agent, "invalid_frame",
							   PQgetisnull(res, r, 3) ? "frame rejected" : PQgetvalue(res, r, 3),
							   f->seq);
			}
			if (f->seq > f->agent->pending_ack)
				f->agent->pending_ack = f->seq;
		}
		for (int i = 0; seen && i < b->n; i++)
			if (!seen[i])
			{
				srv.m.frames_rejected++;
				send_error(b->frames[i]->agent, "invalid_frame",
						   "the database returned no outcome for this frame",
						   b->frames[i]->seq);
			}
		free(seen);
		send_acks(b);
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		bool		frame_fault = state && (!strncmp(state, "22", 2) ||
											!strncmp(state, "23", 2) ||
											!strncmp(state, "P0", 2));

		if (frame_fault && b->n > 1)
		{
			/* one frame spoiled the call: send them one by one */
			requeue_front(b->frames, b->n, true);
		}
		else if (frame_fault)
		{
			struct frame *f = b->frames[0];

			srv.m.frames_rejected++;
			send_error(f->agent, "invalid_frame", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
					   ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "frame rejected",
					   f->seq);
			if (f->seq > f->agent->pending_ack)
				f->agent->pending_ack = f->seq;
			send_acks(b);
		}
		else
		{
			/* not the frames' fault: keep them and try again shortly */
			blog("error", "ingest", "batch of %d failed, retrying: %s", b->n,
				 PQresultErrorMessage(res));
			requeue_front(b->frames, b->n, false);
			ingest_retry_at = now_us() + LWS_US_PER_SEC;
		}
	}
	free(b->frames);
	free(b);
	update_global_pause();
	schedule_batcher(0);
}

/* Send one batch from the front of the waiting list. */
static bool
submit_batch(void)
{
	struct batch *b;
	struct sbuf ids = {0}, frames = {0};
	struct db_query *q;
	int			max = pend_head->single ? 1 : srv.cfg.batch_max;
	int			n = 0;

	b = calloc(1, sizeof(*b));
	if (!b)
		return false;
	b->frames = calloc(pend_count < (size_t) max ? pend_count : (size_t) max,
					   sizeof(struct frame *));
	if (!b->frames)
	{
		free(b);
		return false;
	}
	sbuf_text_array_begin(&ids);
	sbuf_text_array_begin(&frames);
	while (pend_head && n < max && !(n > 0 && pend_head->single))
	{
		struct frame *f = pend_head;

		pend_head = f->next;
		if (!pend_head)
			pend_tail = NULL;
		pend_count--;
		f->next = NULL;
		sbuf_text_array_elem(&ids, f->agent->agent_id, strlen(f->agent->agent_id));
		sbuf_text_array_elem(&frames, f->json, f->len);
		b->frames[n++] = f;
	}
	b->n = n;
	sbuf_text_array_end(&ids, n);
	sbuf_text_array_end(&frames, n);

	q = db_query_new(LANE_INGEST,
					 "SELECT ord, stored, sqlstate, message "
					 "FROM pankha.ingest_many($1::text[], $2::text[])",
					 ingest_done, b);
	if (!q || db_query_param_sbuf(q, &ids) || db_query_param_sbuf(q, &frames))
	{
		if (q)
			db_query_free(q);
		requeue_front(b->frames, b->n, false);
		free(b->frames);
		free(b);
		sbuf_free(&ids);
		sbuf_free(&frames);
		return false;
	}
	sbuf_free(&ids);
	sbuf_free(&frames);
	histogram_observe(&srv.m.batch_size, n);
	db_submit(q);
	return true;
}

/* Form batches while the ingest lane has room. */
static void
batcher(void)
{
	lws_usec_t	now = now_us();

	if (ingest_retry_at > now)
	{
		schedule_batcher(ingest_retry_at - now);
		return;
	}
	while (pend_head && db_lane_load(LANE_INGEST) < srv.cfg.pipeline_depth)
		if (!submit_batch())
		{
			schedule_batcher(100 * LWS_US_PER_MS);
			return;
		}
}

static void
batch_cb(lws_sorted_usec_list_t *sul)
{
	batch_sul_armed = false;
	batcher();
}

static void
schedule_batcher(lws_usec_t delay)
{
	if (!pend_head)
		return;
	if (batch_sul_armed && !delay)
		timer_cancel(&batch_sul);
	else if (batch_sul_armed)
		return;
	batch_sul_armed = true;
	timer_schedule(&batch_sul, batch_cb, delay ? delay : 1);
}

/* Hold a data frame for the next batch. */
static void
queue_frame(struct agent *a, const char *text, size_t len, int64_t seq, cJSON *data)
{
	struct frame *f = calloc(1, sizeof(*f));

	if (!f || !(f->json = xstrndup(text, len)))
	{
		free(f);
		send_error(a, "internal_error", "out of memory; send the frame again", seq);
		return;
	}
	f->len = len;
	f->seq = seq;
	f->agent = a;
	if (ui_any())
	{
		cJSON	   *m = cJSON_CreateObject();

		cJSON_AddStringToObject(m, "type", "data");
		cJSON_AddStringToObject(m, "agent_id", a->agent_id);
		cJSON_AddItemReferenceToObject(m, "data", data);
		f->fwd = cJSON_PrintUnformatted(m);
		f->fwd_len = f->fwd ? strlen(f->fwd) : 0;
		cJSON_Delete(m);
	}
	a->refs++;
	a->held++;
	held_total++;
	srv.m.frames_received++;
	if (pend_tail)
		pend_tail->next = f;
	else
		pend_head = f;
	pend_tail = f;
	pend_count++;
	update_pause(a);
	update_global_pause();
	if (pend_count >= (size_t) srv.cfg.batch_max)
		schedule_batcher(0);
	else if (!batch_sul_armed)
	{
		batch_sul_armed = true;
		timer_schedule(&batch_sul, batch_cb,
						 (lws_usec_t) srv.cfg.batch_window_ms * LWS_US_PER_MS);
	}
}

/* Send what is waiting for a batch now (shutdown). */
void
agents_flush(void)
{
	batcher();
}

/* ---------------------------------------------------------------- commands */

/* Ask for an agent's waiting commands at the next claim. */
void
agent_want_commands(struct agent *a)
{
	if (a->claim_wanted || !a->ws.wsi || !a->connection_id)
		return;
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
	for (struct agent *a = all_head; a; a = a->all_next)
		agent_want_commands(a);
}

/* Build the message an agent receives for one claimed command. */
static void
push_command(struct agent *a, PGresult *res, int r)
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
	send_json(a, msg, true);
}

/* The agents of one claim call, released when it completes. */
struct claim
{
	size_t		n;
	struct agent **agents;
};

static void
claim_done(struct db_query *q, PGresult *res)
{
	struct claim *c = q->arg;

	claim_in_flight = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		for (int r = 0; r < PQntuples(res); r++)
		{
			struct agent *a = agent_find(PQgetvalue(res, r, 1));

			if (a && a->ws.wsi && !a->ws.close_code)
				push_command(a, res, r);
			/* else: it stays claimed until its visibility runs out */
		}
		for (size_t i = 0; i < c->n; i++)
			agent_release(c->agents[i]);
	}
	else
	{
		blog("error", "claim_commands", "%s", PQresultErrorMessage(res));
		/* put them back for the next claim */
		for (size_t i = 0; i < c->n; i++)
		{
			c->agents[i]->claim_wanted = false;
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
	if (!claim_count || claim_in_flight)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->agents = claim_list;
	c->n = claim_count;
	claim_list = NULL;
	claim_count = claim_cap = 0;

	sbuf_text_array_begin(&ids);
	for (size_t i = 0; i < c->n; i++)
	{
		c->agents[i]->claim_wanted = false;
		sbuf_text_array_elem(&ids, c->agents[i]->agent_id, strlen(c->agents[i]->agent_id));
	}
	sbuf_text_array_end(&ids, c->n);
	snprintf(vis, sizeof(vis), "%d seconds", srv.cfg.command_visibility_s);
	snprintf(max, sizeof(max), "%zu", c->n * 100 > 10000 ? 10000 : c->n * 100);
	q = db_query_new(LANE_GENERAL,
					 "SELECT command_id, agent_id, command_type, parameters, priority, attempts "
					 "FROM pankha.claim_commands($1::text[], $2::interval, $3::integer)",
					 claim_done, c);
	if (!q || db_query_param_sbuf(q, &ids) ||
		db_query_param(q, vis, strlen(vis)) || db_query_param(q, max, strlen(max)))
	{
		if (q)
			db_query_free(q);
		for (size_t i = 0; i < c->n; i++)
			agent_release(c->agents[i]);
		free(c->agents);
		free(c);
		sbuf_free(&ids);
		return;
	}
	sbuf_free(&ids);
	claim_in_flight = true;
	db_submit(q);
}

static void
schedule_claim(void)
{
	if (claim_sul_armed || claim_in_flight)
		return;
	claim_sul_armed = true;
	timer_schedule(&claim_sul, claim_cb, 1);
}

/* NOTIFY pankha_command: claim for the agent it names, if connected here. */
static void
on_command_notify(const char *channel, const char *payload)
{
	cJSON	   *p = cJSON_Parse(payload);
	struct agent *a = agent_find(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id")));

	if (a)
		agent_want_commands(a);
	cJSON_Delete(p);
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
			strcmp(bridge, srv.bridge_id) && cJSON_IsNumber(conn) &&
			a->connection_id && a->connection_id < (int64_t) conn->valuedouble)
			agent_close(a, 4000, "replaced");
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
			!creds_still_valid(CRED_AGENT, a->selector, a->agent_id, NULL))
			agent_close(a, 4001, "revoked");
		return;
	}
	for (struct agent *a = all_head; a; a = a->all_next)
		if (a->ws.wsi && !creds_still_valid(CRED_AGENT, a->selector, a->agent_id, NULL))
			agent_close(a, 4001, "revoked");
}

/*
 * Register with the database and the credentials.  Commands committed
 * while LISTEN was away were not notified: they are claimed for every
 * connected agent once LISTEN is in effect again.
 */
int
agents_init(void)
{
	if (db_listen("pankha_command", on_command_notify) ||
		db_listen("pankha_agent", on_agent_notify) ||
		db_on_listen_ready(agents_claim_all) ||
		creds_subscribe(on_credential_changed))
		return -1;
	return 0;
}

/* ---------------------------------------------------------------- messages */

static void
ack_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && a->ws.wsi)
		send_error(a, "invalid_command_ack",
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "command_ack failed", -1);
	agent_release(a);
}

static void
status_done(struct db_query *q, PGresult *res)
{
	struct agent *a = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && a->ws.wsi)
		send_error(a, "invalid_status",
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
				   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "status not stored", -1);
	agent_release(a);
}

static void
handle_command_ack(struct agent *a, cJSON *data)
{
	cJSON	   *id = cJSON_GetObjectItemCaseSensitive(data, "command_id");
	cJSON	   *ok = cJSON_GetObjectItemCaseSensitive(data, "success");
	cJSON	   *err = cJSON_GetObjectItemCaseSensitive(data, "error");
	struct db_query *q;

	if (!cJSON_IsString(id))
	{
		send_error(a, "invalid_message", "data.command_id: missing or not a string", -1);
		return;
	}
	if (!cJSON_IsBool(ok))
	{
		send_error(a, "invalid_message", "data.success: missing or not a boolean", -1);
		return;
	}
	if (err && !cJSON_IsNull(err) && !cJSON_IsString(err))
	{
		send_error(a, "invalid_message", "data.error: not a string or null", -1);
		return;
	}
	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.ack_command($1, $2::uuid, $3::boolean, $4)",
					 ack_done, a);
	if (!q || db_query_param(q, a->agent_id, strlen(a->agent_id)) ||
		db_query_param(q, id->valuestring, strlen(id->valuestring)) ||
		db_query_param(q, cJSON_IsTrue(ok) ? "true" : "false", cJSON_IsTrue(ok) ? 4 : 5) ||
		db_query_param(q, cJSON_IsString(err) ? err->valuestring : NULL,
					   cJSON_IsString(err) ? strlen(err->valuestring) : 0))
	{
		if (q)
			db_query_free(q);
		send_error(a, "internal_error", "out of memory; send it again", -1);
		return;
	}
	if (cJSON_IsTrue(ok))
		srv.m.commands_acked++;
	else
		srv.m.commands_failed++;
	a->refs++;
	db_submit(q);
}

static void
handle_status(struct agent *a, cJSON *data)
{
	struct db_query *q;
	char	   *text;

	if (!cJSON_IsObject(data))
	{
		send_error(a, "invalid_message", "data: missing or not an object", -1);
		return;
	}
	text = cJSON_PrintUnformatted(data);
	q = db_query_new(LANE_GENERAL, "SELECT pankha.record_status($1, $2::jsonb)",
					 status_done, a);
	if (!text || !q || db_query_param(q, a->agent_id, strlen(a->agent_id)) ||
		db_query_param(q, text, strlen(text)))
	{
		if (q)
			db_query_free(q);
		free(text);
		send_error(a, "internal_error", "out of memory; send it again", -1);
		return;
	}
	free(text);
	a->refs++;
	db_submit(q);
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
	cJSON	   *root, *type, *data;
	const char *t;

	a->frames_in++;
	a->bytes_in += len;
	srv.m.bytes_in += len;
	if (!rate_allow(a))
	{
		int			limit = srv.cfg.rate_per_minute / 10 < 5 ? 5 : srv.cfg.rate_per_minute / 10;

		send_error(a, "rate_limited", "too many messages per minute; this one was dropped", -1);
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
		send_error(a, "malformed_json", root ? "message is not a JSON object" :
				   "message is not valid JSON", -1);
		cJSON_Delete(root);
		return;
	}
	type = cJSON_GetObjectItemCaseSensitive(root, "type");
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	t = cJSON_GetStringValue(type);
	if (!t)
		send_error(a, "invalid_message", "type: missing or not a string", -1);
	else if (!strcmp(t, "data"))
	{
		cJSON	   *seq = cJSON_GetObjectItemCaseSensitive(data, "seq");
		int64_t		s = -1;

		if (!cJSON_IsObject(data))
			send_error(a, "invalid_frame", "data: missing or not an object", -1);
		else if (seq && !cJSON_IsNull(seq) &&
				 (!cJSON_IsNumber(seq) || seq->valuedouble < 0 ||
				  seq->valuedouble > 9007199254740991.0 ||
				  floor(seq->valuedouble) != seq->valuedouble))
			send_error(a, "invalid_frame", "data.seq: not a non-negative integer", -1);
		else
		{
			if (cJSON_IsNumber(seq))
				s = (int64_t) seq->valuedouble;
			queue_frame(a, text, len, s, data);
		}
	}
	else if (!strcmp(t, "ping"))
		agent_send(a, "{\"type\":\"pong\"}", 15, false);
	else if (!strcmp(t, "command_ack"))
	{
		if (!cJSON_IsObject(data))
			send_error(a, "invalid_message", "data: missing or not an object", -1);
		else
			handle_command_ack(a, data);
	}
	else if (!strcmp(t, "status"))
		handle_status(a, data);
	else
	{
		struct sbuf m = {0};

		sbuf_printf(&m, "unknown message type \"%.64s\"", t);
		send_error(a, "unknown_type", m.failed ? "unknown message type" : m.data, -1);
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

	for (struct agent *a = all_head; a; a = a->all_next)
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
		attempts_reset();
		for (struct agent *a = all_head; a; a = a->all_next)
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

	a = calloc(1, sizeof(*a));
	if (!a || !(a->agent_id = strdup(id)))
	{
		free(a);
		return ws_refuse(wsi, 500, "out of memory");
	}
	memcpy(a->selector, grant.selector, sizeof(a->selector));
	snprintf(a->remote, sizeof(a->remote), "%s", peer);
	a->refs = 1;				/* the connection's */
	a->pending_ack = a->acked = -1;
	*conn = &a->ws;
	return 0;
}

/* The upgrade completed: replace an older connection, say hello, record it. */
static int
agent_established(struct ws_conn *c)
{
	struct agent *a = lws_container_of(c, struct agent, ws);
	struct agent *old = agent_find(a->agent_id);
	struct db_query *q;
	cJSON	   *msg, *data;

	if (!sweep_started)
	{
		sweep_started = true;
		minute_started = now_us();
		timer_schedule(&sweep_sul, sweep_cb, LWS_US_PER_SEC);
	}
	if (old)
	{
		table_remove(old);
		agent_close(old, 4000, "replaced");
	}
	a->tokens_at = now_us();
	a->tokens = srv.cfg.rate_per_minute;
	if (!table_insert(a))
		return -1;
	a->all_next = all_head;
	if (all_head)
		all_head->all_prev = a;
	all_head = a;
	live_count++;

	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", "connected");
	data = cJSON_AddObjectToObject(msg, "data");
	cJSON_AddStringToObject(data, "agent_id", a->agent_id);
	cJSON_AddStringToObject(data, "bridge", srv.bridge_id);
	cJSON_AddNumberToObject(data, "max_message", (double) srv.cfg.max_message);
	cJSON_AddNumberToObject(data, "rate_per_minute", srv.cfg.rate_per_minute);
	send_json(a, msg, false);

	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.connection_opened($1, $2, $3), pankha.agent_group($1)",
					 opened_done, a);
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

/* One complete message from an agent. */
static void
agent_message(struct ws_conn *c, const char *text, size_t len, bool binary)
{
	struct agent *a = lws_container_of(c, struct agent, ws);

	if (binary)
		send_error(a, "invalid_message", "binary frames are not accepted", -1);
	else
		handle_message(a, text, len);
}

/* The socket closed: out of the table, and its end recorded. */
static void
agent_closed(struct ws_conn *c)
{
	struct agent *a = lws_container_of(c, struct agent, ws);

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
