/*
 * credentials.c - the bridge's copy of the live agent and dashboard tokens.
 *
 * lws 4.1.6 wants the answer to a WebSocket handshake inside the filter
 * callback, so checking a token with a query would stall the one event
 * loop for a round trip per handshake.  Instead the bridge keeps what
 * pankha.bridge_credentials() lists - selector, SHA-256 digest, owner,
 * role, expiry; never a token - in a hash table keyed by selector, and
 * checks a presented token against it: SHA-256 with OpenSSL, compared in
 * constant time.
 *
 * The copy is loaded whole once the LISTEN connection listens on
 * pankha_credentials (at start and after every reconnect of it, since
 * notifications may have been missed), and applied a few thousand rows per
 * turn of the loop; until then handshakes get 503.
 * The extension NOTIFYs the selector of every token that changes, and the
 * bridge reloads just those.  One credential query runs at a time, so
 * results are applied in the order of their snapshots: a query sent after
 * a notification arrived sees the change it announced.  When a credential
 * is gone (revoked, rotated, its agent deleted) or changed, the connections
 * it let in are closed with 4001 "revoked".
 *
 * What pankha.authenticate_agent/authenticate_ui did besides checking -
 * last_used_at, each refusal with its reason counted in the auth.failed
 * row of its address and minute (M5) - is gathered for a few milliseconds
 * and sent in one pankha.record_handshakes call on the general lane.
 */
#include "credentials.h"
#include "db.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define TOKEN_PREFIX_LEN 4		/* "pka_" or "pku_" */
#define TOKEN_LEN (TOKEN_PREFIX_LEN + 64)
#define DIGEST_LEN CRED_DIGEST_LEN
#define REFRESH_MAX 1000		/* selectors reloaded by one query */
#define REPORT_WINDOW_US (20 * LWS_US_PER_MS)	/* handshakes gathered per report */
#define REPORT_BATCH 1000		/* report at once when this many wait */
#define REPORT_MAX_WAITING 100000	/* refusals held while the database is slow */
#define RETRY_US LWS_US_PER_SEC /* after a credential query failed */
#define LOAD_CHUNK 5000			/* rows of a full load applied per loop turn */

/* One live credential. */
struct cred
{
	struct cred *next;			/* chain in its bucket */
	int64_t		token_id;		/* pankha.tokens id, for last_used_at */
	double		expires_at;		/* epoch seconds; 0 for never */
	unsigned char digest[DIGEST_LEN];	/* SHA-256 of the whole token */
	char		selector[CRED_SELECTOR_LEN + 1];
	char		kind;			/* CRED_AGENT or CRED_UI */
	bool		suspect;		/* a NOTIFY named it and its reload has not answered */
	char		role[12];		/* dashboard role, "" for agents */
	char		owner[];		/* agent id or dashboard user name */
};

/* Credentials by selector: chained buckets, a power of two of them. */
struct cred_table
{
	struct cred **buckets;
	size_t		size;
	size_t		count;
};

/* Handshake outcomes waiting for their pankha.record_handshakes call. */
struct report
{
	struct sbuf used;			/* token ids, comma-separated */
	struct sbuf kinds;			/* the refusals, binary text[]s: kind, agent id, token, address */
	struct sbuf agent_ids;
	struct sbuf tokens;
	struct sbuf addrs;
	int			nused;
	int			nfailed;
};

static struct cred_table live;
static bool listening;			/* LISTEN pankha_credentials in force */
static bool loaded;				/* live is complete as of that LISTEN */
static bool reload_wanted;		/* a full load is due */
static bool query_in_flight;	/* one credential query at a time */
static bool retry_waiting;		/* a failed query waits for retry_timer */
static lws_usec_t load_started;
static char **pending;			/* selectors to reload */
static size_t npending, pending_cap;
static struct btimer retry_timer;
static struct report rep;
static struct btimer report_timer;
static bool report_armed;
static bool report_due_now;	/* armed for the next loop pass (a full batch) */
static uint64_t unaudited;		/* refusals dropped since the last warning */

/*
 * A full load being applied: a few thousand rows per turn of the loop, so
 * that 100,000 credentials do not stall it; the old copy answers meanwhile.
 */
static struct
{
	PGresult   *res;			/* the rows (NULL: no load being applied) */
	int			next;			/* first row not yet applied */
	int			skipped;		/* rows that could not be kept */
	struct cred_table fresh;	/* what replaces the copy at the end */
	lws_usec_t	apply_us;		/* time spent applying */
	struct btimer timer;		/* the next chunk */
}			load;

static void creds_kick(void);
static void creds_on_notify(const char *channel, const char *payload);

/* Who hears about changed credentials (the endpoints). */
#define MAX_SUBSCRIBERS 8
static creds_changed_fn subscribers[MAX_SUBSCRIBERS];
static int	nsubscribers;

/* Tell every subscriber that the credential of owner, selector changed (NULL: all). */
static void
publish(char kind, const char *owner, const char *selector)
{
	for (int i = 0; i < nsubscribers; i++)
		subscribers[i] (kind, owner, selector);
}

/* Hear of every credential that changes or goes away; -1 when full. */
int
creds_subscribe(creds_changed_fn fn)
{
	if (nsubscribers >= MAX_SUBSCRIBERS)
		return -1;
	subscribers[nsubscribers++] = fn;
	return 0;
}

/* ---------------------------------------------------------------- table */

static size_t
selector_hash(const char *s)
{
	uint64_t	h = 14695981039346656037ull;

	for (int i = 0; i < CRED_SELECTOR_LEN && s[i]; i++)
		h = (h ^ (unsigned char) s[i]) * 1099511628211ull;
	return (size_t) (h ^ (h >> 32));
}

static struct cred **
table_slot(struct cred_table *t, const char *selector)
{
	struct cred **p;

	if (!t->size)
		return NULL;
	for (p = &t->buckets[selector_hash(selector) & (t->size - 1)]; *p; p = &(*p)->next)
		if (!strcmp((*p)->selector, selector))
			return p;
	return p;
}

static struct cred *
table_find(struct cred_table *t, const char *selector)
{
	struct cred **p = table_slot(t, selector);

	return p ? *p : NULL;
}

/* Double the buckets (or make the first ones); false when memory is short. */
static bool
table_grow(struct cred_table *t)
{
	size_t		nsize = t->size ? t->size * 2 : 1024;
	struct cred **nb = calloc(nsize, sizeof(*nb));

	if (!nb)
		return false;
	for (size_t i = 0; i < t->size; i++)
		for (struct cred *c = t->buckets[i], *next; c; c = next)
		{
			size_t		h = selector_hash(c->selector) & (nsize - 1);

			next = c->next;
			c->next = nb[h];
			nb[h] = c;
		}
	free(t->buckets);
	t->buckets = nb;
	t->size = nsize;
	return true;
}

/* Make room for n entries without growing again; false when memory is short. */
static bool
table_reserve(struct cred_table *t, size_t n)
{
	while (t->size < n)
		if (!table_grow(t))
			return false;
	return true;
}

/* Add c, replacing (and returning) an entry with its selector, if any. */
static bool
table_put(struct cred_table *t, struct cred *c, struct cred **replaced)
{
	struct cred **p;

	*replaced = NULL;
	if (t->count >= t->size && !table_grow(t))
		return false;
	p = table_slot(t, c->selector);
	if (*p)
	{
		*replaced = *p;
		c->next = (*p)->next;
	}
	else
	{
		c->next = NULL;
		t->count++;
	}
	*p = c;
	return true;
}

/* Take the entry of selector out of the table; NULL when there is none. */
static struct cred *
table_take(struct cred_table *t, const char *selector)
{
	struct cred **p = table_slot(t, selector);
	struct cred *c = p ? *p : NULL;

	if (c)
	{
		*p = c->next;
		t->count--;
	}
	return c;
}

static void
table_free(struct cred_table *t)
{
	for (size_t i = 0; i < t->size; i++)
		for (struct cred *c = t->buckets[i], *next; c; c = next)
		{
			next = c->next;
			free(c);
		}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- checking */

static bool
selector_valid(const char *s, size_t len)
{
	if (len != CRED_SELECTOR_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
			  (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

/* Ready to answer handshakes: the database is up and the copy complete. */
bool
creds_ready(void)
{
	return loaded && db_ready();
}

/* Live credentials known. */
size_t
creds_count(void)
{
	return live.count;
}

/*
 * True when the credential with selector is still the token whose digest
 * let owner in as kind (and, for dashboards, with that role): connections
 * recheck with this after their credential changed.  The digest too: a
 * token_hash changed in place under the same selector is another token
 * (L9).
 */
bool
creds_still_valid(char kind, const char *selector, const unsigned char *digest,
				  const char *owner, const char *role)
{
	struct cred *c = table_find(&live, selector);

	return c && c->kind == kind && !strcmp(c->owner, owner) &&
		CRYPTO_memcmp(c->digest, digest, DIGEST_LEN) == 0 &&
		(kind != CRED_UI || !strcmp(c->role, role));
}

static void report_used(int64_t token_id);
static void report_refused(char kind, const char *agent_id, const char *token, const char *peer);

/*
 * Check a handshake's token: for kind CRED_AGENT it must be a live token
 * of agent_id, for CRED_UI a live dashboard token (agent_id NULL).
 * CRED_UNAVAILABLE means "answer 503": nothing is recorded then, as
 * nothing could be.  Either other verdict is recorded for the database.
 */
enum cred_verdict
creds_check(char kind, const char *agent_id, const char *token, const char *peer,
			struct cred_grant *grant)
{
	const char *prefix = kind == CRED_AGENT ? "pka_" : "pku_";
	unsigned char digest[DIGEST_LEN];
	unsigned int digest_len = 0;
	char		selector[CRED_SELECTOR_LEN + 1];
	struct cred *c = NULL;
	bool		ok = false;

	if (!creds_ready())
		return CRED_UNAVAILABLE;
	if (token && strlen(token) == TOKEN_LEN && !strncmp(token, prefix, TOKEN_PREFIX_LEN))
	{
		memcpy(selector, token + TOKEN_PREFIX_LEN, CRED_SELECTOR_LEN);
		selector[CRED_SELECTOR_LEN] = '\0';
		c = table_find(&live, selector);
	}
	/*
	 * A credential a NOTIFY named (revoked, rotated, changed) lets no new
	 * handshake in until its reload answered: a revoked token is refused
	 * from the notification on, not from the reload's answer on.
	 */
	if (c && c->kind == kind && !c->suspect &&
		EVP_Digest(token, TOKEN_LEN, digest, &digest_len, EVP_sha256(), NULL) &&
		digest_len == DIGEST_LEN &&
		CRYPTO_memcmp(digest, c->digest, DIGEST_LEN) == 0)
	{
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		ok = (c->expires_at == 0 || c->expires_at > (double) now.tv_sec + now.tv_nsec / 1e9) &&
			(kind != CRED_AGENT || !strcmp(c->owner, agent_id));
	}
	if (!ok)
	{
		report_refused(kind, agent_id, token, peer);
		return CRED_REFUSED;
	}
	memset(grant, 0, sizeof(*grant));
	memcpy(grant->selector, c->selector, sizeof(grant->selector));
	snprintf(grant->owner, sizeof(grant->owner), "%s", c->owner);
	snprintf(grant->role, sizeof(grant->role), "%s", c->role);
	memcpy(grant->digest, c->digest, DIGEST_LEN);
	report_used(c->token_id);
	return CRED_OK;
}

/* ---------------------------------------------------------------- reports */

static void
report_done(struct db_query *q, PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		blog("error", "handshake_report", "last_used_at and auth.failed rows not recorded: %.*s",
			 (int) strcspn(PQresultErrorMessage(res), "\n"), PQresultErrorMessage(res));
}

static void
report_clear(void)
{
	sbuf_free(&rep.used);
	sbuf_free(&rep.kinds);
	sbuf_free(&rep.agent_ids);
	sbuf_free(&rep.tokens);
	sbuf_free(&rep.addrs);
	rep.nused = rep.nfailed = 0;
}

/* Wrap a comma-separated list into an array literal. */
static char *
array_literal(struct sbuf *elems)
{
	struct sbuf a = {0};

	sbuf_puts(&a, "{");
	if (elems->len)
		sbuf_append(&a, elems->data, elems->len);
	sbuf_puts(&a, "}");
	if (a.failed || elems->failed)
	{
		sbuf_free(&a);
		return NULL;
	}
	return a.data;
}

/* Send what the handshakes since the last report left behind. */
void
creds_flush_reports(void)
{
	struct db_query *q;
	struct sbuf *lists[] = {&rep.kinds, &rep.agent_ids, &rep.tokens, &rep.addrs};
	char	   *used = NULL;
	bool		failed;

	if (report_armed)
	{
		timer_cancel(&report_timer);
		report_armed = false;
	}
	if (!rep.nused && !rep.nfailed)
		return;
	q = db_query_new(LANE_GENERAL,
					 "SELECT pankha.record_handshakes($1::bigint[], $2::text[], $3::text[], "
					 "$4::text[], $5::text[])", report_done, NULL);
	if (q)
		q->once = true;			/* audit rows: not twice */
	failed = !q || !(used = array_literal(&rep.used)) || db_query_param(q, used, strlen(used));
	for (int i = 0; i < 4 && !failed; i++)
	{
		if (!rep.nfailed)
			sbuf_text_array_begin(lists[i]);
		sbuf_text_array_end(lists[i], rep.nfailed);
		failed = db_query_param_sbuf(q, lists[i]) != 0;
	}
	if (failed)
	{
		blog("error", "handshake_report", "out of memory: %d handshakes not recorded",
			 rep.nused + rep.nfailed);
		if (q)
			db_query_free(q);
	}
	else
		db_submit(q);
	free(used);
	report_clear();
	if (unaudited)
	{
		blog("warn", "handshake_report", "%llu refused handshakes not audited (database too slow)",
			 (unsigned long long) unaudited);
		unaudited = 0;
	}
}

static void
report_timer_cb(lws_sorted_usec_list_t *sul)
{
	report_armed = false;
	creds_flush_reports();
}

static void
report_schedule(void)
{
	lws_usec_t	delay = rep.nused + rep.nfailed >= REPORT_BATCH ? 1 : REPORT_WINDOW_US;

	/*
	 * Armed already, and for now when the batch is full: nothing to move
	 * (lws' sorted timer list makes every reschedule a walk, once per
	 * handshake in a connect ramp while a full report waited)
	 */
	if (report_armed && (delay != 1 || report_due_now))
		return;
	report_armed = true;
	report_due_now = delay == 1;
	timer_schedule(&report_timer, report_timer_cb, delay);
}

static void
report_used(int64_t token_id)
{
	if (rep.nused >= REPORT_MAX_WAITING)
		return;					/* only last_used_at; it is set by the next ones */
	sbuf_printf(&rep.used, "%s%lld", rep.nused ? "," : "", (long long) token_id);
	rep.nused++;
	report_schedule();
}

/* Append one element (NULL for SQL NULL) to a list of refusals. */
static void
list_add(struct sbuf *list, bool first, const char *s, size_t n)
{
	if (first)
		sbuf_text_array_begin(list);
	if (s)
		sbuf_text_array_elem(list, s, n);
	else
		sbuf_text_array_null(list);
}

static void
report_refused(char kind, const char *agent_id, const char *token, const char *peer)
{
	bool		first = rep.nfailed == 0;
	bool		token_sendable = token != NULL;

	if (rep.nfailed >= REPORT_MAX_WAITING)
	{
		unaudited++;
		return;
	}
	/*
	 * A presented token goes to the database only when it could be one
	 * (printable ASCII, not long); anything else is "malformed token"
	 * there anyway, and cannot make the whole report fail as text.
	 */
	for (const char *p = token; token_sendable && *p; p++)
		token_sendable = *p > ' ' && *p < 0x7f && p - token < 128;
	/* agent ids reach here checked by agent_id_valid() */
	list_add(&rep.kinds, first, kind == CRED_AGENT ? "agent" : "ui", kind == CRED_AGENT ? 5 : 2);
	list_add(&rep.agent_ids, first, agent_id, agent_id ? strlen(agent_id) : 0);
	list_add(&rep.tokens, first, token_sendable ? token : NULL, token_sendable ? strlen(token) : 0);
	list_add(&rep.addrs, first, peer, peer ? strlen(peer) : 0);
	rep.nfailed++;
	report_schedule();
}

/* ---------------------------------------------------------------- loading */

/* Named by a NOTIFY that no answered query has seen yet? */
static bool
is_pending(const char *selector)
{
	for (size_t i = 0; i < npending; i++)
		if (!strcmp(pending[i], selector))
			return true;
	return false;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A credential from row i of a credential query (selector, kind, token_id,
 * hex digest, owner, role, expiry in epoch seconds); NULL when the row is
 * not usable or memory is short.
 */
static struct cred *
cred_from_row(PGresult *res, int i)
{
	const char *selector = PQgetvalue(res, i, 0);
	const char *kind = PQgetvalue(res, i, 1);
	const char *hex = PQgetvalue(res, i, 3);
	const char *owner = PQgetvalue(res, i, 4);
	size_t		owner_len = strlen(owner);
	struct cred *c;

	if (!selector_valid(selector, strlen(selector)) || strlen(hex) != DIGEST_LEN * 2 ||
		PQgetisnull(res, i, 4) || (strcmp(kind, "agent") && strcmp(kind, "ui")))
		return NULL;
	c = calloc(1, sizeof(*c) + owner_len + 1);
	if (!c)
		return NULL;
	memcpy(c->selector, selector, CRED_SELECTOR_LEN + 1);
	c->kind = kind[0] == 'a' ? CRED_AGENT : CRED_UI;
	c->token_id = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	for (int k = 0; k < DIGEST_LEN; k++)
	{
		int			hi = hex_value(hex[2 * k]), lo = hex_value(hex[2 * k + 1]);

		if (hi < 0 || lo < 0)
		{
			free(c);
			return NULL;
		}
		c->digest[k] = (unsigned char) (hi << 4 | lo);
	}
	snprintf(c->role, sizeof(c->role), "%s", PQgetvalue(res, i, 5));
	c->expires_at = PQgetisnull(res, i, 6) ? 0 : strtod(PQgetvalue(res, i, 6), NULL);
	if (!PQgetisnull(res, i, 6) && c->expires_at <= 0)
		c->expires_at = 1e-9;	/* an expiry before 1970 has passed too */
	memcpy(c->owner, owner, owner_len + 1);
	return c;
}

/* The connections that a changed or removed credential let in are rechecked. */
static void
credential_changed(struct cred *old)
{
	publish(old->kind, old->owner, old->selector);
}

static void
retry_cb(lws_sorted_usec_list_t *sul)
{
	retry_waiting = false;
	creds_kick();
}

static void
query_failed(const char *what, PGresult *res)
{
	blog("error", "credentials", "%s failed (retrying in 1 s): %.*s", what,
		 (int) strcspn(PQresultErrorMessage(res), "\n"), PQresultErrorMessage(res));
	retry_waiting = true;
	timer_schedule(&retry_timer, retry_cb, RETRY_US);
}

/* Apply the next rows of a full load; at the end the new copy replaces the old. */
static void
load_chunk_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	started = now_us();
	int			n = PQntuples(load.res);
	int			until = load.next + LOAD_CHUNK < n ? load.next + LOAD_CHUNK : n;

	for (; load.next < until; load.next++)
	{
		struct cred *c = cred_from_row(load.res, load.next), *dup;

		if (!c || !table_put(&load.fresh, c, &dup))
		{
			free(c);
			load.skipped++;
			continue;
		}
		/* notified again while the load ran: it may be stale already */
		c->suspect = is_pending(c->selector);
		free(dup);
	}
	load.apply_us += now_us() - started;
	if (load.next < n)
	{
		timer_schedule(&load.timer, load_chunk_cb, 1);
		return;
	}
	PQclear(load.res);
	load.res = NULL;
	table_free(&live);
	live = load.fresh;
	memset(&load.fresh, 0, sizeof(load.fresh));
	if (load.skipped)
		blog("error", "credentials", "%d credentials could not be kept (out of memory?)", load.skipped);
	/* a LISTEN lost meanwhile asked for another load; until then, 503 */
	loaded = listening && !reload_wanted;
	srv.m.credential_loads++;
	blog("info", "credentials_loaded", "%zu credentials in %.1f ms (%.1f ms of it applying them)",
		 live.count, (double) (now_us() - load_started) / 1000.0, (double) load.apply_us / 1000.0);
	/* revocations missed while LISTEN was away */
	publish(CRED_AGENT, NULL, NULL);
	publish(CRED_UI, NULL, NULL);
	query_in_flight = false;
	creds_kick();
}

/* The whole list arrived: apply it over the next turns of the loop. */
static void
full_load_done(struct db_query *q, PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		query_in_flight = false;
		reload_wanted = true;
		query_failed("loading credentials", res);
		return;
	}
	/* query_in_flight stays set: later refreshes must apply after this */
	memset(&load.fresh, 0, sizeof(load.fresh));
	load.res = res;
	q->result_kept = true;
	load.next = load.skipped = 0;
	load.apply_us = 0;
	if (!table_reserve(&load.fresh, (size_t) PQntuples(res)))
		blog("warn", "credentials", "no memory to size the table for %d credentials", PQntuples(res));
	timer_schedule(&load.timer, load_chunk_cb, 1);
}

/* Reloaded selectors: the rows returned replace, the others are gone. */
static void
refresh_done(struct db_query *q, PGresult *res)
{
	char	  **selectors = q->arg;
	struct cred **old;
	int			nsel = 0, n;

	query_in_flight = false;
	while (selectors[nsel])
		nsel++;
	old = calloc((size_t) nsel + 1, sizeof(*old));
	if (PQresultStatus(res) != PGRES_TUPLES_OK || !old)
	{
		query_failed("reloading credentials", res);
		/* back to the queue, to be asked again after the pause */
		for (int i = 0; i < nsel; i++)
			creds_on_notify("pankha_credentials", selectors[i]);
		goto out;
	}
	for (int i = 0; i < nsel; i++)
		old[i] = table_take(&live, selectors[i]);
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
	{
		struct cred *c = cred_from_row(res, i), *dup;

		if (c && table_put(&live, c, &dup))
		{
			/* notified again while this query ran: it may be stale already */
			c->suspect = is_pending(c->selector);
			free(dup);
		}
		else
			free(c);			/* out of memory: its connections are closed below */
	}
	/* connections let in by a selector asked for are rechecked against the new entry */
	for (int i = 0; i < nsel; i++)
		if (old[i])
		{
			credential_changed(old[i]);
			free(old[i]);
		}
	srv.m.credential_refreshes++;
out:
	free(old);
	for (int i = 0; i < nsel; i++)
		free(selectors[i]);
	free(selectors);
	creds_kick();
}

static const char *const credential_sql =
"SELECT selector, kind, token_id, encode(token_hash, 'hex'), coalesce(agent_id, user_name), "
"role, extract(epoch FROM expires_at) FROM pankha.bridge_credentials($1::text[])";

/* Send the next credential query, if one is due and none runs. */
static void
creds_kick(void)
{
	struct db_query *q;

	if (query_in_flight || retry_waiting || !listening)
		return;
	if (reload_wanted)
	{
		/* the load sees every change notified so far */
		for (size_t i = 0; i < npending; i++)
			free(pending[i]);
		npending = 0;
		q = db_query_new(LANE_GENERAL, credential_sql, full_load_done, NULL);
		if (!q || db_query_param(q, NULL, 0))
		{
			if (q)
				db_query_free(q);
			blog("error", "credentials", "out of memory");
			retry_waiting = true;
			timer_schedule(&retry_timer, retry_cb, RETRY_US);
			return;
		}
		reload_wanted = false;
		query_in_flight = true;
		load_started = now_us();
		db_submit(q);
		return;
	}
	if (npending)
	{
		size_t		n = npending < REFRESH_MAX ? npending : REFRESH_MAX;
		char	  **batch = calloc(n + 1, sizeof(*batch));
		struct sbuf list = {0};

		if (!batch)
		{
			retry_waiting = true;
			timer_schedule(&retry_timer, retry_cb, RETRY_US);
			return;
		}
		for (size_t i = 0; i < n; i++)
			list_add(&list, i == 0, pending[i], CRED_SELECTOR_LEN);
		sbuf_text_array_end(&list, n);
		q = db_query_new(LANE_GENERAL, credential_sql, refresh_done, batch);
		if (!q || db_query_param_sbuf(q, &list))
		{
			if (q)
				db_query_free(q);
			sbuf_free(&list);
			free(batch);
			blog("error", "credentials", "out of memory");
			retry_waiting = true;
			timer_schedule(&retry_timer, retry_cb, RETRY_US);
			return;
		}
		memcpy(batch, pending, n * sizeof(*batch));
		memmove(pending, pending + n, (npending - n) * sizeof(*pending));
		npending -= n;
		query_in_flight = true;
		db_submit(q);
	}
}

/* LISTEN pankha_credentials is in force (again): load everything. */
static void
creds_listening(void)
{
	listening = true;
	reload_wanted = true;
	creds_kick();
}

/* The LISTEN connection is gone: notifications may be missed from now. */
static void
creds_listen_lost(void)
{
	if (loaded)
		blog("info", "credentials", "LISTEN lost: handshakes wait for a reload");
	listening = false;
	loaded = false;
}

/* NOTIFY pankha_credentials: reload the selector it names ("*": all). */
static void
creds_on_notify(const char *channel, const char *payload)
{
	size_t		len;

	if (!payload)
		return;
	if (!strcmp(payload, "*"))
	{
		reload_wanted = true;
		loaded = false;
		creds_kick();
		return;
	}
	len = strlen(payload);
	if (!selector_valid(payload, len))
		return;
	{
		struct cred *named = table_find(&live, payload);

		if (named)
			named->suspect = true;
	}
	if (npending == pending_cap)
	{
		size_t		ncap = pending_cap ? pending_cap * 2 : 64;
		char	  **n = realloc(pending, ncap * sizeof(*n));

		if (!n)
			goto lost;
		pending = n;
		pending_cap = ncap;
	}
	if (!(pending[npending] = xstrndup(payload, len)))
		goto lost;
	npending++;
	creds_kick();
	return;
lost:
	/* cannot remember it: reload everything instead */
	blog("error", "credentials", "out of memory; reloading all");
	reload_wanted = true;
	loaded = false;
	creds_kick();
}

/* Listen for changed credentials; called before db_init(). */
int
creds_init(void)
{
	if (db_listen("pankha_credentials", creds_on_notify) ||
		db_on_listen_ready(creds_listening) || db_on_listen_lost(creds_listen_lost))
		return -1;
	return 0;
}

/* Free everything (the loop is ending). */
void
creds_shutdown(void)
{
	timer_cancel(&retry_timer);
	timer_cancel(&report_timer);
	timer_cancel(&load.timer);
	if (load.res)
		PQclear(load.res);
	load.res = NULL;
	table_free(&load.fresh);
	report_armed = false;
	report_clear();
	table_free(&live);
	for (size_t i = 0; i < npending; i++)
		free(pending[i]);
	free(pending);
	pending = NULL;
	npending = pending_cap = 0;
	loaded = listening = false;
}
