/*
 * harness.c - the link-time seams of the bridge's libFuzzer targets (see
 * harness.h): lws calls on a fake connection, queries held for the
 * target to answer, timers held for it to fire, and srv as main.c sets it
 * up with its default options.
 */
#include "harness.h"
#include "../ws.h"

#include <string.h>

struct server srv;

/* main.c's; a target never stops the process this way. */
void
server_stop(int status)
{
	srv.exit_status = status;
}

void
harness_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	/* main.c's defaults (docs[] there) */
	srv.cfg.db_pool = 3;
	srv.cfg.batch_window_ms = 5;
	srv.cfg.batch_max = 500;
	srv.cfg.pipeline_depth = 4;
	srv.cfg.max_held_frames = 50000;
	srv.cfg.agent_held_frames = 200;
	srv.cfg.silence_timeout_s = 60;
	srv.cfg.max_message = 65536;
	srv.cfg.rate_per_minute = 100;
	srv.cfg.connects_per_minute_agent = 30;
	srv.cfg.connects_per_minute_ip = 0;
	srv.cfg.max_connections = 20000;
	srv.cfg.max_queued_out = 1048576;
	srv.cfg.max_body = 1048576;
	srv.cfg.http_rate_token = 600;
	srv.cfg.http_rate_ip = 3000;
	srv.cfg.deflate = true;
	srv.cfg.deflate_window = 11;
	srv.cfg.deflate_mem_level = 1;
	srv.cfg.command_visibility_s = 30;
	snprintf(srv.bridge_id, sizeof(srv.bridge_id), "fuzz:0");
	srv.started = now_us();
	/* warnings only, and not to the terminal: the fuzzer's output is its own */
	log_configure("/dev/null", false, 0);
	log_reopen();
	json_arena_init();
}

/* ---------------------------------------------------------------- queries */

static struct db_query *queries, *queries_tail;
static int	nqueries;

void		__wrap_db_submit(struct db_query *q);
bool		__wrap_db_ready(void);

/* db_submit: held until the target answers it. */
void
__wrap_db_submit(struct db_query *q)
{
	q->next = NULL;
	if (queries_tail)
		queries_tail->next = q;
	else
		queries = q;
	queries_tail = q;
	nqueries++;
}

/* The database is up: the paths behind a 503 are the ones worth reaching. */
bool
__wrap_db_ready(void)
{
	return true;
}

int
harness_pending(void)
{
	return nqueries;
}

PGresult *
harness_row(int ncols, const char *const *values)
{
	PGresult   *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[DB_MAX_PARAMS];

	if (!res || ncols > DB_MAX_PARAMS)
		abort();
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < ncols; i++)
	{
		attrs[i].name = (char *) "c";
		attrs[i].typid = 25;	/* text */
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	if (!PQsetResultAttrs(res, ncols, attrs))
		abort();
	for (int i = 0; i < ncols; i++)
		if (!PQsetvalue(res, 0, i, (char *) values[i], values[i] ? (int) strlen(values[i]) : -1))
			abort();
	return res;
}

int
harness_answer(harness_answer_fn answer)
{
	int			n = 0;

	/* answers may submit more queries; a bound keeps a retry loop finite */
	while (queries && n < 10000)
	{
		struct db_query *q = queries;
		PGresult   *res;

		queries = q->next;
		if (!queries)
			queries_tail = NULL;
		nqueries--;
		q->next = NULL;
		res = answer ? answer(q) : NULL;
		if (!res)
			res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
		if (q->done)
			q->done(q, res);
		if (!q->result_kept)
			PQclear(res);
		db_query_free(q);
		n++;
	}
	return n;
}

/* ---------------------------------------------------------------- timers */

#define MAX_TIMERS 64

static struct
{
	lws_sorted_usec_list_t *sul;
	sul_cb_t	cb;
	lws_usec_t	due;
}			timers[MAX_TIMERS];
static int	ntimers;

void		__wrap_lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul,
									sul_cb_t cb, lws_usec_t us);
void		__wrap_lws_sul_cancel(lws_sorted_usec_list_t *sul);

static int
timer_find(lws_sorted_usec_list_t *sul)
{
	for (int i = 0; i < ntimers; i++)
		if (timers[i].sul == sul)
			return i;
	return -1;
}

static void
timer_drop(int i)
{
	timers[i] = timers[--ntimers];
}

void
__wrap_lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul,
						sul_cb_t cb, lws_usec_t us)
{
	int			i = timer_find(sul);

	if (us == LWS_SET_TIMER_USEC_CANCEL)
	{
		if (i >= 0)
			timer_drop(i);
		return;
	}
	if (i < 0)
	{
		if (ntimers == MAX_TIMERS)
			abort();			/* the bridge has a handful of timers */
		i = ntimers++;
	}
	timers[i].sul = sul;
	timers[i].cb = cb;
	timers[i].due = now_us() + us;
}

void
__wrap_lws_sul_cancel(lws_sorted_usec_list_t *sul)
{
	int			i = timer_find(sul);

	if (i >= 0)
		timer_drop(i);
}

int
harness_fire_timers(bool all)
{
	lws_usec_t	now = now_us();
	lws_sorted_usec_list_t *due[MAX_TIMERS];
	int			ndue = 0, n = 0;

	/* those scheduled now; one that schedules itself again waits for the next call */
	for (int i = 0; i < ntimers; i++)
		if (all || timers[i].due <= now)
			due[ndue++] = timers[i].sul;
	for (int k = 0; k < ndue; k++)
	{
		int			i = timer_find(due[k]);
		sul_cb_t	cb;

		if (i < 0)
			continue;			/* cancelled by an earlier callback */
		cb = timers[i].cb;
		timer_drop(i);
		cb(due[k]);
		n++;
	}
	return n;
}

void
harness_forget_timers(void)
{
	ntimers = 0;
}

/* ---------------------------------------------------------------- lws */

/*
 * Each __wrap_lws_X stands for lws_X on a struct fake_wsi, doing what lws
 * 4.1.6 documents and does for its return values.
 */
#define FAKE(wsi) ((struct fake_wsi *) (wsi))

int			__wrap_lws_callback_on_writable(struct lws *wsi);
void		__wrap_lws_set_timeout(struct lws *wsi, enum pending_timeout reason, int secs);
int			__wrap_lws_rx_flow_control(struct lws *wsi, int enable);
void		__wrap_lws_close_reason(struct lws *wsi, enum lws_close_status status,
									unsigned char *buf, size_t len);
int			__wrap_lws_frame_is_binary(struct lws *wsi);
int			__wrap_lws_is_first_fragment(struct lws *wsi);
int			__wrap_lws_is_final_fragment(struct lws *wsi);
unsigned char __wrap_lws_get_reserved_bits(struct lws *wsi);
int			__wrap_lws_extension_callback_pm_deflate(struct lws_context *context,
													 const struct lws_extension *ext,
													 struct lws *wsi,
													 enum lws_extension_callback_reasons reason,
													 void *user, void *in, size_t len);
int			__wrap_lws_write(struct lws *wsi, unsigned char *buf, size_t len,
							 enum lws_write_protocol protocol);
int			__wrap_lws_partial_buffered(struct lws *wsi);
void	   *__wrap_lws_wsi_user(struct lws *wsi);
int			__wrap_lws_hdr_total_length(struct lws *wsi, enum lws_token_indexes h);
int			__wrap_lws_hdr_copy(struct lws *wsi, char *dest, int len, enum lws_token_indexes h);
int			__wrap_lws_hdr_fragment_length(struct lws *wsi, enum lws_token_indexes h, int frag_idx);
int			__wrap_lws_hdr_copy_fragment(struct lws *wsi, char *dest, int len,
										 enum lws_token_indexes h, int frag_idx);
int			__wrap_lws_hdr_custom_length(struct lws *wsi, const char *name, int nlen);
int			__wrap_lws_hdr_custom_copy(struct lws *wsi, char *dst, int len, const char *name,
									   int nlen);
const char *__wrap_lws_get_urlarg_by_name(struct lws *wsi, const char *name, char *buf, int len);
const char *__wrap_lws_get_peer_simple(struct lws *wsi, char *name, size_t namelen);
int			__wrap_lws_add_http_common_headers(struct lws *wsi, unsigned int code,
											   const char *content_type, lws_filepos_t content_len,
											   unsigned char **p, unsigned char *end);
int			__wrap_lws_add_http_header_by_name(struct lws *wsi, const unsigned char *name,
											   const unsigned char *value, int length,
											   unsigned char **p, unsigned char *end);
int			__wrap_lws_finalize_write_http_header(struct lws *wsi, unsigned char *start,
												  unsigned char **p, unsigned char *end);
int			__wrap_lws_http_transaction_completed(struct lws *wsi);
int			__wrap_lws_callback_http_dummy(struct lws *wsi, enum lws_callback_reasons reason,
										   void *user, void *in, size_t len);
void		__wrap_lws_cancel_service(struct lws_context *context);
int			__wrap_lws_set_extension_option(struct lws *wsi, const char *ext_name,
											const char *opt_name, const char *opt_val);

int
__wrap_lws_callback_on_writable(struct lws *wsi)
{
	FAKE(wsi)->writable_asks++;
	return 1;
}

void
__wrap_lws_set_timeout(struct lws *wsi, enum pending_timeout reason, int secs)
{
}

int
__wrap_lws_rx_flow_control(struct lws *wsi, int enable)
{
	FAKE(wsi)->rx_paused = !enable;
	return 0;
}

void
__wrap_lws_close_reason(struct lws *wsi, enum lws_close_status status, unsigned char *buf,
						size_t len)
{
	FAKE(wsi)->close_code = (int) status;
	/* lws copies at most 123 bytes of reason: touch what it would read */
	for (size_t i = 0; i < len && i < 123; i++)
		(void) *(volatile unsigned char *) (buf + i);
}

int
__wrap_lws_frame_is_binary(struct lws *wsi)
{
	return FAKE(wsi)->binary;
}

int
__wrap_lws_is_first_fragment(struct lws *wsi)
{
	return FAKE(wsi)->first;
}

int
__wrap_lws_is_final_fragment(struct lws *wsi)
{
	return FAKE(wsi)->final;
}

unsigned char
__wrap_lws_get_reserved_bits(struct lws *wsi)
{
	return FAKE(wsi)->rsv;
}

/* lws' own permessage-deflate: uncompressed payload passes as it is. */
int
__wrap_lws_extension_callback_pm_deflate(struct lws_context *context,
										 const struct lws_extension *ext, struct lws *wsi,
										 enum lws_extension_callback_reasons reason,
										 void *user, void *in, size_t len)
{
	return 0;
}

int
__wrap_lws_write(struct lws *wsi, unsigned char *buf, size_t len,
				 enum lws_write_protocol protocol)
{
	/* what lws would send: every byte is read */
	unsigned char sum = 0;

	for (size_t i = 0; i < len; i++)
		sum ^= buf[i];
	(void) *(volatile unsigned char *) &sum;
	FAKE(wsi)->written += len;
	/* ws.c writes its close frame raw: FIN + opcode 8, length, code */
	if (protocol == LWS_WRITE_RAW && len >= 4 && buf[0] == 0x88 && buf[1] == len - 2)
		FAKE(wsi)->close_code = buf[2] << 8 | buf[3];
	return (int) len;
}

/* Every write goes out whole here. */
int
__wrap_lws_partial_buffered(struct lws *wsi)
{
	return 0;
}

void *
__wrap_lws_wsi_user(struct lws *wsi)
{
	return FAKE(wsi)->user;
}

static struct fake_header *
find_header(struct fake_wsi *w, int token, const char *custom)
{
	for (int i = 0; i < w->nheaders; i++)
		if (w->headers[i].token == token &&
			(token >= 0 || !strcasecmp(w->headers[i].custom, custom)))
			return &w->headers[i];
	return NULL;
}

void
fake_header(struct fake_wsi *w, int token, const char *value, int len)
{
	if (w->nheaders < FAKE_MAX_HEADERS && !find_header(w, token, NULL))
		w->headers[w->nheaders++] = (struct fake_header) {token, NULL, value, len};
}

void
fake_custom_header(struct fake_wsi *w, const char *name, const char *value, int len)
{
	if (w->nheaders < FAKE_MAX_HEADERS && !find_header(w, -1, name))
		w->headers[w->nheaders++] = (struct fake_header) {-1, name, value, len};
}

/* URI arguments are fragments joined with '&', as lws keeps them. */
int
__wrap_lws_hdr_total_length(struct lws *wsi, enum lws_token_indexes h)
{
	struct fake_wsi *w = FAKE(wsi);
	struct fake_header *f;
	int			len = 0;

	if (h == WSI_TOKEN_HTTP_URI_ARGS)
	{
		for (int i = 0; i < w->nargs; i++)
			len += (int) strlen(w->args[i]) + (i ? 1 : 0);
		return len;
	}
	f = find_header(w, (int) h, NULL);
	return f ? f->len : 0;
}

int
__wrap_lws_hdr_copy(struct lws *wsi, char *dest, int len, enum lws_token_indexes h)
{
	struct fake_wsi *w = FAKE(wsi);
	int			total = __wrap_lws_hdr_total_length(wsi, h);

	if (len <= 0)
		return -1;
	*dest = '\0';
	if (!total)
		return 0;
	if (total >= len)
		return -1;
	if (h == WSI_TOKEN_HTTP_URI_ARGS)
	{
		char	   *p = dest;

		for (int i = 0; i < w->nargs; i++)
		{
			size_t		n = strlen(w->args[i]);

			if (i)
				*p++ = '&';
			memcpy(p, w->args[i], n);
			p += n;
		}
		*p = '\0';
		return total;
	}
	memcpy(dest, find_header(w, (int) h, NULL)->value, (size_t) total);
	dest[total] = '\0';
	return total;
}

int
__wrap_lws_hdr_fragment_length(struct lws *wsi, enum lws_token_indexes h, int frag_idx)
{
	struct fake_wsi *w = FAKE(wsi);

	if (h == WSI_TOKEN_HTTP_URI_ARGS)
		return frag_idx >= 0 && frag_idx < w->nargs ? (int) strlen(w->args[frag_idx]) : 0;
	return frag_idx == 0 ? __wrap_lws_hdr_total_length(wsi, h) : 0;
}

int
__wrap_lws_hdr_copy_fragment(struct lws *wsi, char *dest, int len, enum lws_token_indexes h,
							 int frag_idx)
{
	struct fake_wsi *w = FAKE(wsi);
	int			n = __wrap_lws_hdr_fragment_length(wsi, h, frag_idx);
	const char *src;

	if (!n)
		return -1;				/* no such fragment */
	if (n >= len)
		return -1;
	src = h == WSI_TOKEN_HTTP_URI_ARGS ? w->args[frag_idx] : find_header(w, (int) h, NULL)->value;
	memcpy(dest, src, (size_t) n);
	dest[n] = '\0';
	return n;
}

int
__wrap_lws_hdr_custom_length(struct lws *wsi, const char *name, int nlen)
{
	struct fake_header *f = find_header(FAKE(wsi), -1, name);

	return f ? f->len : -1;
}

int
__wrap_lws_hdr_custom_copy(struct lws *wsi, char *dst, int len, const char *name, int nlen)
{
	struct fake_header *f = find_header(FAKE(wsi), -1, name);

	if (!f || f->len >= len)
		return -1;
	memcpy(dst, f->value, (size_t) f->len);
	dst[f->len] = '\0';
	return f->len;
}

const char *
__wrap_lws_get_urlarg_by_name(struct lws *wsi, const char *name, char *buf, int len)
{
	int			sl = (int) strlen(name);

	for (int n = 0; __wrap_lws_hdr_copy_fragment(wsi, buf, len, WSI_TOKEN_HTTP_URI_ARGS, n) >= 0; n++)
		if (!strncmp(buf, name, (size_t) sl))
			return buf + sl;
	return NULL;
}

const char *
__wrap_lws_get_peer_simple(struct lws *wsi, char *name, size_t namelen)
{
	snprintf(name, namelen, "%s", FAKE(wsi)->peer ? FAKE(wsi)->peer : "127.0.0.1");
	return name;
}

/* Header writers: like lws, fail when the header does not fit. */
static int
put(unsigned char **p, unsigned char *end, const void *s, size_t n)
{
	if ((size_t) (end - *p) < n + 2)
		return 1;
	memcpy(*p, s, n);
	*p += n;
	memcpy(*p, "\r\n", 2);
	*p += 2;
	return 0;
}

int
__wrap_lws_add_http_common_headers(struct lws *wsi, unsigned int code, const char *content_type,
								   lws_filepos_t content_len, unsigned char **p, unsigned char *end)
{
	char		line[128];
	int			n = snprintf(line, sizeof(line), "HTTP/1.1 %u\r\ncontent-type: %s", code,
							 content_type);

	if (code < 100 || code > 599)
		abort();				/* not a status the bridge may send */
	return put(p, end, line, (size_t) n);
}

int
__wrap_lws_add_http_header_by_name(struct lws *wsi, const unsigned char *name,
								   const unsigned char *value, int length, unsigned char **p,
								   unsigned char *end)
{
	size_t		nl = strlen((const char *) name);

	if ((size_t) (end - *p) < nl + (size_t) length + 3)
		return 1;
	memcpy(*p, name, nl);
	*p += nl;
	*(*p)++ = ' ';
	return put(p, end, value, (size_t) length);
}

int
__wrap_lws_finalize_write_http_header(struct lws *wsi, unsigned char *start, unsigned char **p,
									  unsigned char *end)
{
	if (put(p, end, "", 0))
		return 1;
	return __wrap_lws_write(wsi, start, (size_t) (*p - start), LWS_WRITE_HTTP_HEADERS) < 0;
}

int
__wrap_lws_http_transaction_completed(struct lws *wsi)
{
	return 0;
}

int
__wrap_lws_callback_http_dummy(struct lws *wsi, enum lws_callback_reasons reason, void *user,
							   void *in, size_t len)
{
	return 0;
}

void
__wrap_lws_cancel_service(struct lws_context *context)
{
}

int
__wrap_lws_set_extension_option(struct lws *wsi, const char *ext_name, const char *opt_name,
								const char *opt_val)
{
	return 0;
}

bool
harness_drain(struct fake_wsi *w, struct ws_session *s)
{
	for (int i = 0; i < 10000 && w->writable_asks; i++)
	{
		w->writable_asks = 0;
		if (ws_callback((struct lws *) w, LWS_CALLBACK_SERVER_WRITEABLE, s, NULL, 0))
			return false;
		if (w->close_code)
			return false;		/* the close frame is out: the linger's end is lws' */
	}
	return true;
}
