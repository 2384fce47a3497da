/*
 * harness.h - what the bridge's libFuzzer targets share (harness.c).
 *
 * The targets link the bridge's own objects, built with clang and the
 * sanitizers, and call them as libwebsockets would.  There is no lws
 * context and no database: the few lws calls the message paths make on a
 * connection and the one call that hands a query to the database are
 * bound, at link time (ld --wrap, see Makefile), to the functions here.
 * A connection is a struct fake_wsi; its request headers, fragment flags
 * and what the bridge writes to it are fields the target sets and reads.
 * Queries wait in a list until the target answers them (harness_answer);
 * timers wait until it fires them (harness_fire_timers).  Nothing of the
 * bridge's own code is replaced.
 */
#ifndef PANKHA_FUZZ_HARNESS_H
#define PANKHA_FUZZ_HARNESS_H

#include "../db.h"

#define FAKE_MAX_HEADERS 16
#define FAKE_MAX_FRAGS 20

/* One header of a fake request: an lws token or a custom "name:" header. */
struct fake_header
{
	int			token;			/* enum lws_token_indexes, or -1 for custom */
	const char *custom;			/* "x-agent-id:" when token is -1 */
	const char *value;
	int			len;
};

/* A connection as the bridge's code sees it through lws. */
struct fake_wsi
{
	void	   *user;			/* lws_wsi_user() */
	const char *peer;			/* lws_get_peer_simple() */
	struct fake_header headers[FAKE_MAX_HEADERS];
	int			nheaders;
	const char *args[FAKE_MAX_FRAGS];	/* URI argument fragments, decoded */
	int			nargs;
	bool		binary, first, final;	/* the frame being received */
	unsigned char rsv;			/* its reserved bits (0x40: compressed) */
	int			writable_asks;	/* lws_callback_on_writable() calls */
	size_t		written;		/* bytes lws_write() took */
	int			close_code;		/* lws_close_reason(), or the close frame ws.c wrote */
	bool		rx_paused;
};

/* Set up srv as main.c would with default options; once per process. */
void		harness_init(void);

/*
 * Answer every waiting query (and those their answers submit, up to a
 * bound): with answer's result when it gives one, else an error result,
 * as a failed query gives.  Returns how many were answered.
 */
typedef PGresult *(*harness_answer_fn) (struct db_query *q);
int			harness_answer(harness_answer_fn answer);
/* A one-row result of text values, as a query's answer. */
PGresult   *harness_row(int ncols, const char *const *values);
/* Run the timers that are due or, with all, every scheduled one; returns how many ran. */
int			harness_fire_timers(bool all);
/* Queries submitted and not yet answered. */
int			harness_pending(void);
/* Drop every timer still scheduled (a connection's end, between inputs). */
void		harness_forget_timers(void);

void		fake_header(struct fake_wsi *w, int token, const char *value, int len);
void		fake_custom_header(struct fake_wsi *w, const char *name, const char *value, int len);

struct ws_session;
/* Let the bridge write what it queued on w; false once it wants w closed. */
bool		harness_drain(struct fake_wsi *w, struct ws_session *s);

#endif							/* PANKHA_FUZZ_HARNESS_H */
