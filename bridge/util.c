/*
 * util.c - small pieces shared by the bridge's modules: growable strings,
 * histograms, the connection-attempt limiter, logging, timers, transient
 * JSON parsing.  It knows nothing of the bridge's state (server.h).
 */
#include "util.h"

#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>
#include <sys/timerfd.h>

/* Monotonic microseconds. */
lws_usec_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (lws_usec_t) ts.tv_sec * LWS_US_PER_SEC + ts.tv_nsec / 1000;
}

/* A now_us() time as microseconds since the epoch (for logs read beside other clocks). */
int64_t
mono_to_real_us(lws_usec_t mono)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - (now_us() - mono);
}

/* strndup that stops at n bytes and tolerates NULL; NULL on no memory. */
char *
xstrndup(const char *s, size_t n)
{
	char	   *d;

	if (!s)
		return NULL;
	d = malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* The bearer token of the Authorization header: 0 (and *out maybe NULL), -1 no memory. */
int
http_bearer_token(struct lws *wsi, char **out)
{
	int			n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	char	   *buf;
	char	   *t;

	*out = NULL;
	if (n <= 0)
		return 0;
	buf = malloc((size_t) n + 1);
	if (!buf)
		return -1;
	if (lws_hdr_copy(wsi, buf, n + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
	{
		free(buf);
		return 0;
	}
	if (strncasecmp(buf, "Bearer ", 7))
	{
		free(buf);
		return 0;
	}
	for (t = buf + 7; *t == ' '; t++)
		;
	if (*t)
	{
		*out = strdup(t);
		if (!*out)
		{
			free(buf);
			return -1;
		}
	}
	free(buf);
	return 0;
}

/* ---------------------------------------------------------------- sbuf */

static bool
sbuf_reserve(struct sbuf *b, size_t more)
{
	size_t		need;
	char	   *d;

	if (b->failed)
		return false;
	if (more > SIZE_MAX / 2 - b->len)
	{
		b->failed = true;
		return false;
	}
	need = b->len + more + 1;
	if (need <= b->cap)
		return true;
	if (need < b->cap * 2)
		need = b->cap * 2;
	if (need < 256)
		need = 256;
	d = realloc(b->data, need);
	if (!d)
	{
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = need;
	return true;
}

void
sbuf_append(struct sbuf *b, const char *s, size_t n)
{
	if (!sbuf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_append(b, s, strlen(s));
}

void
sbuf_printf(struct sbuf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sbuf_reserve(b, (size_t) n))
	{
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

/* Append one double-quoted element of a PostgreSQL array literal. */
/*
 * An agent id as the extension takes it (pk_check_id, pankha.valid_id):
 * 1 to 64 bytes of UTF-8 without ASCII control characters.  Ids come from the wire and go to
 * logs and to the database, so the bridge refuses others at the door.
 */
bool
agent_id_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n;)
	{
		unsigned char b = p[i];
		size_t		len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 :
			(b & 0xf8) == 0xf0 ? 4 : 0;

		if (len == 0 || i + len > n || b < 0x20 || b == 0x7f ||
			(len == 2 && b < 0xc2) ||
			(len == 3 && ((b == 0xe0 && p[i + 1] < 0xa0) || (b == 0xed && p[i + 1] >= 0xa0))) ||
			(len == 4 && ((b == 0xf0 && p[i + 1] < 0x90) || b > 0xf4 ||
						  (b == 0xf4 && p[i + 1] >= 0x90))))
			return false;
		for (size_t k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

/*
 * A one-dimensional text[] in PostgreSQL's binary array format (a query
 * parameter sent with format 1): the server takes each element as it is,
 * with no quoting to parse or undo.  begin, then an elem (or null) per
 * element, then end with the count, which fills in the dimension.
 */
static void
sbuf_put_int32(struct sbuf *b, uint32_t v)
{
	uint32_t	be = htonl(v);

	sbuf_append(b, (const char *) &be, 4);
}

void
sbuf_text_array_begin(struct sbuf *b)
{
	b->len = 0;
	sbuf_put_int32(b, 1);		/* dimensions */
	sbuf_put_int32(b, 0);		/* no nulls */
	sbuf_put_int32(b, 25);		/* element type: text */
	sbuf_put_int32(b, 0);		/* length, set by sbuf_text_array_end() */
	sbuf_put_int32(b, 1);		/* lower bound */
}

void
sbuf_text_array_elem(struct sbuf *b, const char *s, size_t n)
{
	if (n > INT32_MAX)
	{
		b->failed = true;
		return;
	}
	sbuf_put_int32(b, (uint32_t) n);
	sbuf_append(b, s, n);
}

void
sbuf_text_array_null(struct sbuf *b)
{
	uint32_t	has_nulls = htonl(1);

	sbuf_put_int32(b, UINT32_MAX);	/* length -1: NULL */
	if (!b->failed && b->len >= 20)
		memcpy(b->data + 4, &has_nulls, 4);
}

void
sbuf_text_array_end(struct sbuf *b, size_t count)
{
	uint32_t	be = htonl((uint32_t) count);

	if (!b->failed && b->len >= 20)
		memcpy(b->data + 12, &be, 4);
}

void
sbuf_free(struct sbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- metrics */

void
histogram_observe(struct histogram *h, double v)
{
	int			i;

	for (i = 0; i < h->nbounds; i++)
		if (v <= h->bounds[i])
			break;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

/* ---------------------------------------------------------------- limiter */

/* One counted key of the attempt limiter. */
struct attempt
{
	struct attempt *next;
	unsigned int count;
	char		key[];			/* "kind:key" */
};

#define ATTEMPT_BUCKETS 4096
static struct attempt *attempt_table[ATTEMPT_BUCKETS];

static unsigned int
hash_str(const char *s)
{
	unsigned int h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char) *s++) * 16777619u;
	return h;
}

/*
 * Count one attempt for kind/key; false once it exceeds per_minute in the
 * current minute (0 means unlimited).  Memory short: allow.
 */
bool
attempts_allow(const char *kind, const char *key, int per_minute)
{
	struct sbuf k = {0};
	struct attempt *a;
	unsigned int h;
	bool		ok = true;

	if (per_minute <= 0)
		return true;
	sbuf_printf(&k, "%s:%s", kind, key);
	if (k.failed)
		return true;
	h = hash_str(k.data) % ATTEMPT_BUCKETS;
	for (a = attempt_table[h]; a; a = a->next)
		if (!strcmp(a->key, k.data))
			break;
	if (!a)
	{
		a = malloc(sizeof(*a) + k.len + 1);
		if (a)
		{
			memcpy(a->key, k.data, k.len + 1);
			a->count = 0;
			a->next = attempt_table[h];
			attempt_table[h] = a;
		}
	}
	if (a && ++a->count > (unsigned int) per_minute)
		ok = false;
	sbuf_free(&k);
	return ok;
}

/* How many times key of kind was charged this minute (nothing charged). */
unsigned int
attempts_count(const char *kind, const char *key)
{
	struct sbuf k = {0};
	unsigned int n = 0;

	sbuf_printf(&k, "%s:%s", kind, key);
	if (k.failed)
		return 0;
	for (struct attempt *a = attempt_table[hash_str(k.data) % ATTEMPT_BUCKETS]; a; a = a->next)
		if (!strcmp(a->key, k.data))
		{
			n = a->count;
			break;
		}
	sbuf_free(&k);
	return n;
}

/* Start a new minute. */
void
attempts_reset(void)
{
	for (int i = 0; i < ATTEMPT_BUCKETS; i++)
	{
		while (attempt_table[i])
		{
			struct attempt *a = attempt_table[i];

			attempt_table[i] = a->next;
			free(a);
		}
	}
}

/* ---------------------------------------------------------------- logging */

static FILE *log_out;
static const char *log_file;	/* NULL: stderr */
static bool log_json;
static int	log_verbose = 1;

/* Where and how to log (from the options); then log_reopen() opens it. */
void
log_configure(const char *file, bool json, int verbose)
{
	log_file = file;
	log_json = json;
	log_verbose = verbose;
}

/* Reopen the log file (at start and on SIGHUP). */
void
log_reopen(void)
{
	if (log_out && log_out != stderr)
		fclose(log_out);
	log_out = NULL;
	if (log_file)
	{
		log_out = fopen(log_file, "a");
		if (!log_out)
			fprintf(stderr, "pankha-bridge: cannot open log file %s\n", log_file);
	}
	if (!log_out)
		log_out = stderr;
	setvbuf(log_out, NULL, _IOLBF, 0);
}

/* Log one event as one line (plain or JSON). */
void
blog(const char *level, const char *event, const char *fmt,...)
{
	char		when[40];
	struct timespec ts;
	struct tm	tm;
	va_list		ap;
	struct sbuf msg = {0};
	int			n;

	if (!strcmp(level, "debug") && log_verbose < 2)
		return;
	if (!strcmp(level, "info") && log_verbose < 1)
		return;
	if (!log_out)
		log_out = stderr;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n >= 0)
	{
		char	   *text = malloc((size_t) n + 1);

		if (text)
		{
			va_start(ap, fmt);
			vsnprintf(text, (size_t) n + 1, fmt, ap);
			va_end(ap);
			sbuf_append(&msg, text, (size_t) n);
			free(text);
		}
	}
	if (log_json)
	{
		cJSON	   *o = cJSON_CreateObject();
		char	   *line = NULL;

		if (o)
		{
			cJSON_AddStringToObject(o, "time", when);
			cJSON_AddStringToObject(o, "level", level);
			cJSON_AddStringToObject(o, "event", event);
			cJSON_AddStringToObject(o, "message", msg.data ? msg.data : "");
			line = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
		}
		if (line)
			fprintf(log_out, "%s\n", line);
		free(line);
	}
	else
		fprintf(log_out, "%s %s %s: %s\n", when, level, event,
				msg.data ? msg.data : "");
	sbuf_free(&msg);
}

/*
 * Timers.  lws 4.1.6 on libev keeps one loop timer for all its suls and
 * re-arms it with ev_timer_set()/ev_timer_start() even while it runs,
 * which libev does not support: an earlier deadline can be missed until
 * some unrelated event wakes the loop.  So every timer of ours is an lws
 * sul plus an entry here, and one timerfd, watched by the loop as a plain
 * file descriptor, wakes lws (lws_cancel_service) at the earliest entry;
 * lws then runs whatever suls are ripe.
 */
static struct btimer *armed;	/* timers with a pending deadline */
static struct lws_context *timer_context;
static struct ev_loop *timer_loop;
static int	wake_fd = -1;
static ev_io wake_io;

static void
timer_rearm(void)
{
	struct itimerspec its;
	lws_usec_t	first = 0;

	for (struct btimer *t = armed; t; t = t->next)
		if (!first || t->deadline < first)
			first = t->deadline;
	memset(&its, 0, sizeof(its));
	if (first)
	{
		/* absolute CLOCK_MONOTONIC time; 0 would disarm, so at least 1 ns */
		its.it_value.tv_sec = first / LWS_US_PER_SEC;
		its.it_value.tv_nsec = (first % LWS_US_PER_SEC) * 1000 + 1;
	}
	timerfd_settime(wake_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void
timer_unlink(struct btimer *t)
{
	for (struct btimer **p = &armed; *p; p = &(*p)->next)
		if (*p == t)
		{
			*p = t->next;
			t->next = NULL;
			t->linked = false;
			return;
		}
}

static void
timer_wake_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	uint64_t	expirations;
	lws_usec_t	now = now_us();
	struct btimer *t, *next;

	if (read(wake_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		blog("warn", "timer", "reading the timerfd failed: %s", strerror(errno));
	for (t = armed; t; t = next)
	{
		next = t->next;
		if (t->deadline <= now)
			timer_unlink(t);
	}
	timer_rearm();
	lws_cancel_service(timer_context);
}

/* Create the timerfd and watch it from the loop. */
int
timers_init(struct lws_context *context, struct ev_loop *loop)
{
	timer_context = context;
	timer_loop = loop;
	wake_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (wake_fd < 0)
		return -1;
	ev_io_init(&wake_io, timer_wake_cb, wake_fd, EV_READ);
	ev_io_start(timer_loop, &wake_io);
	return 0;
}

/* Stop watching the timerfd (shutdown). */
void
timers_shutdown(void)
{
	if (wake_fd < 0)
		return;
	ev_io_stop(timer_loop, &wake_io);
	close(wake_fd);
	wake_fd = -1;
}

/* Schedule a timer callback us microseconds from now. */
void
timer_schedule(struct btimer *t, sul_cb_t cb, lws_usec_t us)
{
	lws_sul_schedule(timer_context, 0, &t->sul, cb, us);
	t->deadline = now_us() + (us > 0 ? us : 1);
	if (!t->linked)
	{
		t->next = armed;
		armed = t;
		t->linked = true;
	}
	timer_rearm();
}

/* Cancel a timer scheduled with timer_schedule(). */
void
timer_cancel(struct btimer *t)
{
	lws_sul_cancel(&t->sul);
	if (t->linked)
	{
		timer_unlink(t);
		timer_rearm();
	}
}

/*
 * Transient JSON parsing.  Parsing a ~1 KB agent frame makes cJSON
 * allocate a hundred-odd nodes and strings, and glibc's malloc and free of
 * those were the largest part of the bridge's CPU with 19,000 agents.  So
 * while json_parse_transient() runs, cJSON's allocations come from one
 * reused block (bump allocation); frees of pointers inside the block do
 * nothing.  When the block is full, or outside a transient parse, the
 * hooks fall through to malloc/free.  The block is reused from its start at
 * the next transient parse, so a tree from json_parse_transient() must be
 * deleted before the next call (handle_message() does).
 */
#define ARENA_SIZE (128 * 1024)

static struct
{
	char	   *base;
	size_t		used;
	bool		active;
}			arena;

static void *
arena_malloc(size_t n)
{
	if (arena.active && arena.base)
	{
		size_t		need = (n + 15) & ~(size_t) 15;

		if (need >= n && need <= ARENA_SIZE - arena.used)
		{
			void	   *p = arena.base + arena.used;

			arena.used += need;
			return p;
		}
	}
	return malloc(n);
}

static void
arena_free(void *p)
{
	if (arena.base && (char *) p >= arena.base && (char *) p < arena.base + ARENA_SIZE)
		return;
	free(p);
}

/* Route cJSON's allocations through the arena hooks (once, at startup). */
void
json_arena_init(void)
{
	cJSON_Hooks hooks = {arena_malloc, arena_free};

	arena.base = malloc(ARENA_SIZE);	/* without it every parse uses malloc */
	cJSON_InitHooks(&hooks);
}

/*
 * Parse text[0..len) as one JSON value: NULL when it is not one, also when
 * anything but whitespace follows the value (cJSON alone stops at its end
 * and takes '{"type":"ping"}}' for a ping).
 */
cJSON *
json_parse(const char *text, size_t len)
{
	const char *end = NULL;
	cJSON	   *root = cJSON_ParseWithLengthOpts(text, len, &end, false);

	if (root && end)
	{
		while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
			end++;
		if (end != text + len)
		{
			cJSON_Delete(root);
			return NULL;
		}
	}
	return root;
}

/* json_parse() with the arena; the tree must be deleted before the next call. */
cJSON *
json_parse_transient(const char *text, size_t len)
{
	cJSON	   *root;

	arena.used = 0;
	arena.active = true;
	root = json_parse(text, len);
	arena.active = false;
	return root;
}
