/*
 * ingest_batch.c - data frames from every agent to the database, in
 * batches, with backpressure and the ack rules.
 *
 * Each agent belongs to one ingest shard (a hash of its id), and each
 * shard has its own database connection, so that two backends share the
 * work while one agent's frames stay on one connection, in order.  Frames
 * wait --batch-window-ms (or until --batch-max) and go as text to
 * pankha.ingest_many in one call on their shard's connection;
 * --pipeline-depth calls per shard may be in flight.  A shard's batches
 * commit in order, so after each commit the agents in it get an ack with
 * their highest committed seq; a frame the extension rejected gets
 * invalid_frame and counts as handled, and so does a frame the bridge
 * refuses itself because PostgreSQL could not take it as text (a NUL
 * byte): it never goes to the database, so it cannot fail a batch.  A
 * batch that fails because of a frame (classes 22, 23, P0) is split in
 * halves, and those again, until the frame is alone: the others go on in
 * batches.  Frames are held until committed: a batch that fails for a
 * reason not its frames' goes back to the front and is sent again; nothing
 * is acknowledged before its commit.  Past --agent-held-frames frames or
 * --agent-held-bytes bytes of one agent, or --max-held-frames frames or
 * --max-held-bytes bytes overall, reading from those sockets pauses so that
 * TCP pushes back; a frame that still comes while twice --agent-held-bytes
 * of its agent are held is refused and the agent closed, unacknowledged
 * (L2).  Newly stored frames go to whoever registered
 * with ingest_on_stored() (the dashboards).
 */
#include "ingest_batch.h"
#include "db.h"

#include <string.h>

/* One data frame held until its batch commits. */
struct frame
{
	struct frame *next;
	struct agent *agent;		/* holds a reference */
	int64_t		seq;			/* -1 when the frame had none */
	int			cap;			/* most frames in its batch (a split of a failed one), 0: any */
	const char *refused;		/* why the bridge refuses it without the database, or NULL */
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
	int			shard;
	struct frame **frames;
	int		   *sent;			/* frames[] index of the call's ord - 1 */
	int			nsent;
};

/* Frames waiting for a batch, per shard. */
struct shard
{
	struct frame *head, *tail;
	size_t		count;
	lws_usec_t	retry_at;		/* after a failure not the frames' */
	/* failing: its last batch failed for a reason not its frames' (a full disk, 53100) */
	bool		failing;
	lws_usec_t	failing_since;
	lws_usec_t	logged_at;		/* the last "still failing" line */
	uint64_t	retries;		/* batches sent again since it began failing */
};

#define MAX_SHARDS 16
static struct shard shards[MAX_SHARDS];

/* All frames held (waiting or in flight). */
static size_t pend_count;
static size_t held_total;
static size_t held_bytes_total;	/* bytes of the frames held, fwd copies included */
static bool paused_all;
static struct btimer batch_sul;
static bool batch_sul_armed;

/* Who gets committed frames. */
static ingest_wanted_fn forward_wanted;
static ingest_stored_fn forward_stored;

static void batcher(void);
static void schedule_batcher(lws_usec_t delay);

/* Hand newly stored frames to stored() while wanted() says so; one subscriber. */
int
ingest_on_stored(ingest_wanted_fn wanted, ingest_stored_fn stored)
{
	if (forward_stored)
		return -1;
	forward_wanted = wanted;
	forward_stored = stored;
	return 0;
}

/* Shards whose last batch failed for a reason not its frames' (/metrics). */
int
ingest_failing(void)
{
	int			n = 0;

	for (int s = 0; s < MAX_SHARDS; s++)
		n += shards[s].failing;
	return n;
}

size_t
ingest_held(void)
{
	return held_total;
}

size_t
ingest_held_bytes(void)
{
	return held_bytes_total;
}

/* Pause or resume reading from an agent according to what it holds. */
static void
update_pause(struct agent *a)
{
	bool		want_pause;

	if (!a->ws.wsi || a->ws.close_code)
		return;
	want_pause = paused_all || a->held >= srv.cfg.agent_held_frames ||
		a->held_bytes >= srv.cfg.agent_held_bytes;
	if (want_pause && !a->ws.rx_paused)
		ws_pause_rx(&a->ws, true);
	else if (!want_pause && a->ws.rx_paused && a->held <= srv.cfg.agent_held_frames / 2 &&
			 a->held_bytes <= srv.cfg.agent_held_bytes / 2)
		ws_pause_rx(&a->ws, false);
}

/* Global backpressure: stop reading everyone while too much is held. */
static void
update_global_pause(void)
{
	bool		was = paused_all;

	if (!paused_all && (held_total >= (size_t) srv.cfg.max_held_frames ||
						held_bytes_total >= srv.cfg.max_held_bytes))
		paused_all = true;
	else if (paused_all && held_total <= (size_t) srv.cfg.max_held_frames / 2 &&
			 held_bytes_total <= srv.cfg.max_held_bytes / 2)
		paused_all = false;
	if (was == paused_all)
		return;
	if (paused_all)
	{
		srv.m.read_pauses++;
		blog("warn", "backpressure", "%zu frames (%zu bytes) held: reading paused", held_total,
			 held_bytes_total);
	}
	else
		blog("info", "backpressure", "%zu frames held: reading resumed", held_total);
	for (struct agent *a = agents_first(); a; a = a->all_next)
		update_pause(a);
}

static void
frame_free(struct frame *f)
{
	struct agent *a = f->agent;

	a->held--;
	held_total--;
	a->held_bytes -= f->len + f->fwd_len;
	held_bytes_total -= f->len + f->fwd_len;
	if (f->requeued)
		a->requeued--;
	free(f->json);
	free(f->fwd);
	free(f);
	update_pause(a);
	agent_release(a);
}

/* An agent's shard: the same for all its frames, whatever the connection. */
static int
shard_of(const char *agent_id)
{
	uint32_t	h = 2166136261u;	/* FNV-1a */
	int			n = db_ingest_shards();

	for (const unsigned char *p = (const unsigned char *) agent_id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return (int) (h % (uint32_t) (n < MAX_SHARDS ? n : MAX_SHARDS));
}

/*
 * Put frames back at the front of their shard's waiting list, in order;
 * cap > 0 limits the batches they go in (the halves of a split).
 */
static void
requeue_front(struct shard *sh, struct frame **frames, int n, int cap)
{
	for (int i = n - 1; i >= 0; i--)
	{
		struct frame *f = frames[i];

		if (cap)
			f->cap = cap;
		if (!f->requeued)
		{
			f->requeued = true;
			f->agent->requeued++;
		}
		f->next = sh->head;
		sh->head = f;
		if (!sh->tail)
			sh->tail = f;
		sh->count++;
		pend_count++;
	}
}

/*
 * Send an ack to each agent of the batch that had frames with seq in it.
 * A shard's batches run in order on its connection, and an agent's frames
 * all go to its shard, so when this one commits every earlier frame of
 * its agents has too; the exception is a frame put back
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
			a->ack_due && a->pending_ack >= 0 && a->ws.wsi && !a->refused)
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

/* A frame that is handled without being stored: invalid_frame, and acked in turn. */
static void
frame_rejected(struct frame *f, const char *why)
{
	srv.m.frames_rejected++;
	if (f->agent->ws.wsi)
		agent_send_error(f->agent, "invalid_frame", why, f->seq);
	if (f->seq > f->agent->pending_ack)
		f->agent->pending_ack = f->seq;
}

static void
batch_free(struct batch *b)
{
	free(b->frames);
	free(b->sent);
	free(b);
}

/* The outcome of a batch (res NULL: nothing of it went to the database). */
static void
batch_done(struct batch *b, PGresult *res)
{
	struct shard *sh = &shards[b->shard];
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_TUPLES_OK;

	if (st == PGRES_TUPLES_OK && sh->failing)
	{
		sh->failing = false;
		blog("warn", "ingest_recovered", "ingest shard %d: storing again after %.1f s and %llu retries",
			 b->shard, (double) (now_us() - sh->failing_since) / 1e6, (unsigned long long) sh->retries);
	}
	if (st == PGRES_TUPLES_OK)
	{
		bool	   *seen = calloc(b->n ? b->n : 1, sizeof(bool));
		int			rows = res ? PQntuples(res) : 0;

		for (int r = 0; r < rows; r++)
		{
			int			ord = atoi(PQgetvalue(res, r, 0));
			struct frame *f;

			if (ord < 1 || ord > b->nsent)
				continue;
			f = b->frames[b->sent[ord - 1]];
			if (seen)
				seen[b->sent[ord - 1]] = true;
			if (PQgetisnull(res, r, 2))
			{
				/* stored, or stored before: committed either way */
				srv.m.frames_committed++;
				if (PQgetvalue(res, r, 1)[0] == 't' && f->fwd && forward_stored)
					forward_stored(f->agent->agent_id, f->agent->group, f->fwd, f->fwd_len);
				if (f->seq > f->agent->pending_ack)
					f->agent->pending_ack = f->seq;
			}
			else
				frame_rejected(f, PQgetisnull(res, r, 3) ? "frame rejected" : PQgetvalue(res, r, 3));
		}
		for (int i = 0; seen && i < b->n; i++)
			if (!seen[i])
				frame_rejected(b->frames[i], b->frames[i]->refused ? b->frames[i]->refused :
							   "the database returned no outcome for this frame");
		free(seen);
		send_acks(b);
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		bool		frame_fault = state && (!strncmp(state, "22", 2) ||
											!strncmp(state, "23", 2) ||
											!strncmp(state, "P0", 2));

		if (frame_fault && b->nsent > 1)
		{
			/*
			 * One frame spoiled the call: the halves go again, each in a
			 * batch of its own (the second first, to the front, so the
			 * first stays ahead of it).
			 */
			int			half = (b->n + 1) / 2;

			requeue_front(sh, b->frames + half, b->n - half, b->n - half);
			requeue_front(sh, b->frames, half, half);
		}
		else if (frame_fault)
		{
			const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			for (int i = 0; i < b->n; i++)
				frame_rejected(b->frames[i], b->frames[i]->refused ? b->frames[i]->refused :
							   m ? m : "frame rejected");
			send_acks(b);
		}
		else
		{
			/*
			 * Not the frames' fault (a full disk: 53100, or out of memory,
			 * too many connections, the server going away): they are held,
			 * nothing is acked, and one batch a second probes until one
			 * commits.  The first failure is logged in full, then one line
			 * every 10 s while it lasts, and one when it is over.
			 */
			lws_usec_t	now = now_us();

			srv.m.ingest_retries++;
			if (!sh->failing)
			{
				sh->failing = true;
				sh->failing_since = sh->logged_at = now;
				sh->retries = 0;
				blog("error", "ingest", "shard %d: batch of %d failed (SQLSTATE %s), holding its frames "
					 "and retrying each second: %s", b->shard, b->n, state ? state : "none",
					 PQresultErrorMessage(res));
			}
			else if (now - sh->logged_at >= 10 * LWS_US_PER_SEC)
			{
				sh->logged_at = now;
				blog("error", "ingest", "shard %d still failing after %.0f s (%llu retries, SQLSTATE %s): %s",
					 b->shard, (double) (now - sh->failing_since) / 1e6,
					 (unsigned long long) sh->retries, state ? state : "none",
					 PQresultErrorMessage(res));
			}
			sh->retries++;
			requeue_front(sh, b->frames, b->n, 0);
			sh->retry_at = now + LWS_US_PER_SEC;
		}
	}
	batch_free(b);
	update_global_pause();
	schedule_batcher(0);
}

static void
ingest_done(struct db_query *q, PGresult *res)
{
	batch_done(q->arg, res);
}

/* Send one batch from the front of a shard's waiting list. */
static bool
submit_batch(int shard)
{
	struct shard *sh = &shards[shard];
	struct batch *b;
	struct sbuf ids = {0}, frames = {0};
	struct db_query *q;
	int			cap = sh->head->cap;
	int			max = cap ? cap : srv.cfg.batch_max;
	size_t		want = sh->count < (size_t) max ? sh->count : (size_t) max;
	int			n = 0;

	b = calloc(1, sizeof(*b));
	if (!b)
		return false;
	b->shard = shard;
	b->frames = calloc(want, sizeof(struct frame *));
	b->sent = calloc(want, sizeof(int));
	if (!b->frames || !b->sent)
	{
		batch_free(b);
		return false;
	}
	sbuf_text_array_begin(&ids);
	sbuf_text_array_begin(&frames);
	while (sh->head && n < max && sh->head->cap == cap)
	{
		struct frame *f = sh->head;

		sh->head = f->next;
		if (!sh->head)
			sh->tail = NULL;
		sh->count--;
		pend_count--;
		f->next = NULL;
		if (!f->refused)
		{
			sbuf_text_array_elem(&ids, f->agent->agent_id, strlen(f->agent->agent_id));
			sbuf_text_array_elem(&frames, f->json, f->len);
			b->sent[b->nsent++] = n;
		}
		b->frames[n++] = f;
	}
	b->n = n;
	if (!b->nsent)
	{
		/* only frames refused here: their turn has come, nothing to store */
		sbuf_free(&ids);
		sbuf_free(&frames);
		batch_done(b, NULL);
		return true;
	}
	sbuf_text_array_end(&ids, b->nsent);
	sbuf_text_array_end(&frames, b->nsent);

	q = db_query_new(LANE_INGEST,
					 "SELECT ord, stored, sqlstate, message "
					 "FROM pankha.ingest_many($1::text[], $2::text[])",
					 ingest_done, b);
	if (q)
	{
		q->shard = shard;
		q->retry_on_error = false;	/* ingest_done keeps the order; db.c must not */
	}
	if (!q || db_query_param_sbuf(q, &ids) || db_query_param_sbuf(q, &frames))
	{
		if (q)
			db_query_free(q);
		requeue_front(sh, b->frames, b->n, 0);
		batch_free(b);
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

/* Form batches while each shard's connection has room. */
static void
batcher(void)
{
	lws_usec_t	now = now_us(), wait = 0;
	int			n = db_ingest_shards();

	for (int s = 0; s < n && s < MAX_SHARDS; s++)
	{
		struct shard *sh = &shards[s];

		if (sh->head && sh->retry_at > now)
		{
			if (!wait || sh->retry_at - now < wait)
				wait = sh->retry_at - now;
			continue;
		}
		/* a failing shard sends one batch at a time, to probe */
		while (sh->head && db_shard_load(s) < (sh->failing ? 1 : srv.cfg.pipeline_depth))
			if (!submit_batch(s))
			{
				wait = 100 * LWS_US_PER_MS;
				break;
			}
	}
	if (wait)
		schedule_batcher(wait);
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
	if (!pend_count)
		return;
	if (batch_sul_armed && !delay)
		timer_cancel(&batch_sul);
	else if (batch_sul_armed)
		return;
	batch_sul_armed = true;
	timer_schedule(&batch_sul, batch_cb, delay ? delay : 1);
}

/*
 * A data frame refused for a limit (rate, memory): it is not stored, so
 * no later ack of this connection may cover it.  The connection stops
 * acknowledging and is closed; the agent re-sends from its last ack on
 * the next one (the ack contract, docs in bridge/README.md).
 */
void
ingest_refuse(struct agent *a, int64_t seq, int close_code, const char *code, const char *why)
{
	char		msg[160];

	srv.m.frames_refused++;
	if (a->refused)
		return;
	a->refused = true;
	snprintf(msg, sizeof(msg), "%s: frame dropped; re-send from the last ack", why);
	agent_send_error(a, code, msg, seq);
	agent_close(a, close_code, why);
}

/* Hold a data frame for the next batch (data: its parsed "data" member). */
void
ingest_queue_frame(struct agent *a, const char *text, size_t len, int64_t seq, cJSON *data)
{
	struct frame *f;

	if (a->held_bytes >= 2 * srv.cfg.agent_held_bytes)
	{
		/*
		 * Reading paused at --agent-held-bytes, yet frames still come (L2):
		 * refused, so that no ack covers it (M3), and the connection closes.
		 */
		srv.m.closed_held_bytes++;
		ingest_refuse(a, seq, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too_much_held",
					  "too many bytes of frames waiting for the database");
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->json = xstrndup(text, len)))
	{
		free(f);
		ingest_refuse(a, seq, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "internal_error",
					  "out of memory");
		return;
	}
	f->len = len;
	f->seq = seq;
	f->agent = a;
	/*
	 * PostgreSQL takes no NUL in text: such a frame would fail its whole
	 * batch (22021), so it is refused here, alone, in its turn (L1).
	 * Other control characters are the extension's to judge (validate.c).
	 */
	if (memchr(text, '\0', len))
		f->refused = "the frame contains a NUL byte (U+0000 must be escaped, and is no valid id or status)";
	if (forward_wanted && forward_wanted())
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
	a->held_bytes += f->len + f->fwd_len;
	held_bytes_total += f->len + f->fwd_len;
	srv.m.frames_received++;
	{
		struct shard *sh = &shards[shard_of(a->agent_id)];

		if (sh->tail)
			sh->tail->next = f;
		else
			sh->head = f;
		sh->tail = f;
		sh->count++;
		pend_count++;
		update_pause(a);
		update_global_pause();
		if (sh->count >= (size_t) srv.cfg.batch_max)
		{
			schedule_batcher(0);
			return;
		}
	}
	if (!batch_sul_armed)
	{
		batch_sul_armed = true;
		timer_schedule(&batch_sul, batch_cb,
						 (lws_usec_t) srv.cfg.batch_window_ms * LWS_US_PER_MS);
	}
}

/* Send what is waiting for a batch now (shutdown). */
void
ingest_flush(void)
{
	batcher();
}

