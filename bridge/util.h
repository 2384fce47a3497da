/*
 * util.h - small pieces every module uses (util.c): monotonic time,
 * timers on the libev loop, logging, growable strings and binary text[]
 * parameters, histograms, the connection-attempt limiter, transient JSON
 * parsing, agent id and bearer token checks.  It knows no module of the
 * bridge, not even its state.
 */
#ifndef PANKHA_UTIL_H
#define PANKHA_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <ev.h>
#include <libwebsockets.h>
#include <cjson/cJSON.h>

/* A growable buffer for building messages and binary query parameters. */
struct sbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;			/* an allocation failed; content is garbage */
};

void		sbuf_append(struct sbuf *b, const char *s, size_t n);
void		sbuf_puts(struct sbuf *b, const char *s);
void		sbuf_printf(struct sbuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		sbuf_text_array_begin(struct sbuf *b);
void		sbuf_text_array_elem(struct sbuf *b, const char *s, size_t n);
void		sbuf_text_array_null(struct sbuf *b);
void		sbuf_text_array_end(struct sbuf *b, size_t count);
void		sbuf_free(struct sbuf *b);

/* JSON parsing for one message at a time, without a malloc per node */
void		json_arena_init(void);
cJSON	   *json_parse(const char *text, size_t len);
cJSON	   *json_parse_transient(const char *text, size_t len);

#define HIST_MAX_BUCKETS 16

/* A Prometheus histogram with fixed upper bounds. */
struct histogram
{
	const char *name;
	const char *help;
	int			nbounds;
	double		bounds[HIST_MAX_BUCKETS];
	uint64_t	counts[HIST_MAX_BUCKETS + 1];
	double		sum;
	uint64_t	count;
};

void		histogram_observe(struct histogram *h, double v);

/* A connection-attempt limiter keyed by string, reset each minute. */
bool		attempts_allow(const char *kind, const char *key, int per_minute);
unsigned int attempts_count(const char *kind, const char *key);
void		attempts_reset(void);

/* Logging: one line per event. */
void		blog(const char *level, const char *event, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
void		log_configure(const char *file, bool json, int verbose);
void		log_reopen(void);

lws_usec_t	now_us(void);
int64_t		mono_to_real_us(lws_usec_t mono);

/* A timer: an lws_sul (callbacks get &sul) and its wake-up entry. */
struct btimer
{
	lws_sorted_usec_list_t sul;
	struct btimer *next;		/* in the list of armed timers */
	lws_usec_t	deadline;		/* monotonic us */
	bool		linked;
};

int			timers_init(struct lws_context *context, struct ev_loop *loop);
void		timers_shutdown(void);
void		timer_schedule(struct btimer *t, sul_cb_t cb, lws_usec_t us);
void		timer_cancel(struct btimer *t);

char	   *xstrndup(const char *s, size_t n);
bool		agent_id_valid(const char *s);
int			http_bearer_token(struct lws *wsi, char **out);

#endif							/* PANKHA_UTIL_H */
