/*
 * sync.c - the HTTP fallback for networks that block WebSocket upgrades:
 * after several failed handshakes in a row the link tries
 * POST /api/v1/agents/sync.  When that works it keeps syncing every update
 * interval (frames and command acks out; commands and config in) while
 * link.c still tries the WebSocket with backoff, and stops syncing once a
 * WebSocket is up again.  A batch the server refuses as too large is split.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

static void sync_done(struct http_req *r, bool ok);

/* Append to a growing string; false when out of memory. */
static bool
sb_add(char **s, size_t *len, size_t *cap, const char *add, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		size_t		nc = (*len + n + 1) * 2;
		char	   *nb = realloc(*s, nc);

		if (!nb)
			return false;
		*s = nb;
		*cap = nc;
	}
	memcpy(*s + *len, add, n);
	*len += n;
	(*s)[*len] = '\0';
	return true;
}

/* Send buffered frames and pending acks by POST /api/v1/agents/sync. */
void
sync_start(struct pk_link *l)
{
	struct http_req *r = &l->sync;
	struct pk_agent *a = l->a;
	char	   *body = NULL,
			   *id;
	size_t		len = 0,
				cap = 0;
	cJSON	   *idj = cJSON_CreateString(a->agent_id);
	bool		ok;
	size_t		nframes = 0;
	int			nacks = 0;

	if (r->in_flight || l->stopping)
		return;
	id = idj ? cJSON_PrintUnformatted(idj) : NULL;
	cJSON_Delete(idj);
	ok = id && sb_add(&body, &len, &cap, "{\"agent_id\":", 12) && sb_add(&body, &len, &cap, id, strlen(id)) &&
		sb_add(&body, &len, &cap, ",\"frames\":[", 11);
	free(id);
	r->last_seq = -1;
	r->nseqs = 0;
	if (!l->sync_max_bytes)
		l->sync_max_bytes = SYNC_MAX_BYTES;
	for (size_t i = 0, bytes = 0; ok && i < a->buf.count && nframes < SYNC_BATCH; i++)
	{
		const struct pk_frame *f = pk_buffer_at(&a->buf, i);

		/* At least one frame, so that a batch always moves on. */
		if (nframes > 0 && bytes + f->len + 1 > l->sync_max_bytes)
			break;
		bytes += f->len + 1;

		ok = (nframes == 0 || sb_add(&body, &len, &cap, ",", 1)) &&
			sb_add(&body, &len, &cap, f->json, f->len);
		r->last_seq = f->seq;
		r->seqs[r->nseqs++] = f->seq;
		nframes++;
	}
	ok = ok && sb_add(&body, &len, &cap, "],\"acks\":[", 10);
	for (struct out_msg *m = l->q_head; ok && m; m = m->next)
	{
		if (!m->is_ack)
			continue;
		ok = (nacks == 0 || sb_add(&body, &len, &cap, ",", 1)) && sb_add(&body, &len, &cap, m->text, m->len);
		m->in_sync = true;
		nacks++;
	}
	ok = ok && sb_add(&body, &len, &cap, "]}", 2);
	if (!ok)
	{
		pk_log(PK_LOG_ERROR, "out of memory building a sync request");
		free(body);
		for (struct out_msg *m = l->q_head; m; m = m->next)
			m->in_sync = false;
		return;
	}
	free(r->body);
	r->body = body;
	r->body_len = len;
	r->done = sync_done;
	pk_log(PK_LOG_DEBUG, "sync: %zu frame(s), %d ack(s)", nframes, nacks);
	if (http_start(l, r) != 0)
		sync_done(r, false);
}

void
sync_on_timer(lws_sorted_usec_list_t *sul)
{
	struct pk_link *l = lws_container_of(sul, struct pk_link, sul_sync);

	if (l->http_mode && !l->ws_up)
		sync_start(l);
}

/*
 * The highest seq the sync stored for good.  The answer has one outcome
 * per frame ({"stored"} or {"sqlstate","error"}); a frame refused as
 * invalid will never be stored and is logged and passed over, but one that
 * failed for a passing reason (connection, serialization, resources) is
 * sent again, with everything after it.
 */
static int64_t
sync_stored_upto(struct http_req *r, const cJSON *results)
{
	int			i = 0;
	const cJSON *res;

	if (!cJSON_IsArray(results))
		return r->last_seq;
	cJSON_ArrayForEach(res, results)
	{
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(res, "sqlstate");
		const cJSON *error = cJSON_GetObjectItemCaseSensitive(res, "error");

		if (i >= r->nseqs)
			break;
		if (cJSON_IsString(state))
		{
			const char *s = state->valuestring;
			bool		transient = !strncmp(s, "08", 2) || !strncmp(s, "40", 2) ||
				!strncmp(s, "53", 2) || !strncmp(s, "57", 2) || !strncmp(s, "58", 2);

			pk_log(PK_LOG_WARN, "sync: frame seq %" PRId64 " not stored (%s: %s)%s", r->seqs[i], s,
				   cJSON_IsString(error) ? error->valuestring : "", transient ? "; sending it again" : "");
			if (transient)
				return i > 0 ? r->seqs[i - 1] : -1;
		}
		i++;
	}
	return r->last_seq;
}

/* Work through a sync response: acks, commands, config. */
static void
sync_done(struct http_req *r, bool ok)
{
	struct pk_link *l = r->link;
	cJSON	   *resp = NULL;
	const cJSON *cmds,
			   *config,
			   *c;
	struct out_msg *m,
			   *next;

	if (ok && r->status == 413 && r->nseqs > 0)
	{
		/*
		 * Over the server's body limit: send fewer frames at a time, and
		 * drop a frame that is too large alone, or the fallback would
		 * send the same refused batch for ever (review L5).
		 */
		for (m = l->q_head; m; m = m->next)
			m->in_sync = false;
		if (r->nseqs > 1)
		{
			l->sync_max_bytes = r->body_len / 2 > 1 ? r->body_len / 2 : 1;
			pk_log(PK_LOG_WARN, "sync: %d frames in %zu bytes are over the server's body limit; "
				   "sending at most %zu bytes at a time", r->nseqs, r->body_len, l->sync_max_bytes);
		}
		else
		{
			pk_log(PK_LOG_ERROR, "sync: frame seq %" PRId64 " alone (%zu bytes) is over the server's "
				   "body limit: dropped", r->seqs[0], r->body_len);
			pk_buffer_ack(&l->a->buf, r->seqs[0]);
			l->a->buf.dropped++;
		}
		if (l->http_mode && !l->ws_up && !l->stopping)
			lws_sul_schedule(l->ctx, 0, &l->sul_sync, sync_on_timer, 0);
		return;
	}
	ok = ok && r->status == 200;
	if (ok)
	{
		resp = cJSON_ParseWithLength(r->resp ? r->resp : "", r->resp_len);
		ok = cJSON_IsObject(resp);
	}
	for (m = l->q_head; m; m = next)
	{
		next = m->next;
		if (m->in_sync && ok)
			link_unlink_msg(l, m);
		else
			m->in_sync = false;
	}
	if (!ok)
	{
		cJSON_Delete(resp);
		if (r->status == 401 || r->status == 403)
			pk_log(PK_LOG_ERROR, "sync refused (HTTP %d): check the agent id and token", r->status);
		if (l->http_mode)
			pk_log(PK_LOG_WARN, "HTTP sync failed (status %d); retrying", r->status);
		else
			pk_log(PK_LOG_INFO, "HTTP sync fallback not available (status %d)", r->status);
		if (l->http_mode && !l->stopping)
			lws_sul_schedule(l->ctx, 0, &l->sul_sync, sync_on_timer,
							 link_usec(l->a->settings.update_interval));
		return;
	}
	l->last_contact_ms = pk_mono_ms();
	if (!l->http_mode && !l->ws_up)
	{
		pk_log(PK_LOG_WARN, "WebSocket handshakes keep failing but HTTP works: "
			   "syncing over HTTP while retrying the WebSocket");
		l->http_mode = true;
	}
	if (r->last_seq >= 0)
		pk_buffer_ack(&l->a->buf, sync_stored_upto(r, cJSON_GetObjectItemCaseSensitive(resp, "frames")));
	cmds = cJSON_GetObjectItemCaseSensitive(resp, "commands");
	if (cJSON_IsArray(cmds))
		cJSON_ArrayForEach(c, cmds)
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "data");

		link_handle_command(l, cJSON_IsObject(d) ? d : c);
	}
	config = cJSON_GetObjectItemCaseSensitive(resp, "config");
	if (cJSON_IsObject(config))
		link_apply_config(l, config);
	cJSON_Delete(resp);
	if (l->http_mode && !l->ws_up && !l->stopping)
	{
		bool		more = l->a->buf.count > 0 && pk_buffer_after(&l->a->buf, r->last_seq);
		bool		acks = false;

		for (m = l->q_head; m; m = m->next)
			acks |= m->is_ack;
		lws_sul_schedule(l->ctx, 0, &l->sul_sync, sync_on_timer,
						 more || acks ? 0 : link_usec(l->a->settings.update_interval));
	}
}
