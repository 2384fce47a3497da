/*
 * deflate.h - permessage-deflate with bounded memory per connection
 * (deflate.c).  It knows connections only as their struct deflate_state
 * and a wsi: the WebSocket layer tells it how to find one from the other
 * and how to close a connection whose compressed stream cannot go on.
 */
#ifndef PANKHA_DEFLATE_H
#define PANKHA_DEFLATE_H

#include "server.h"

/* What permessage-deflate holds for one connection. */
struct deflate_state
{
	const char *who;			/* "an agent", for logs */
	int			window;			/* permessage-deflate window bits (0: none) */
	bool		context;		/* the client keeps its context between messages */
	bool		in_message;		/* receiving a compressed message */
	bool		discarding;		/* past --max-message: the rest of the stream is dropped */
	bool		parked;			/* no inflater, its window in dict */
	size_t		inflated;		/* bytes inflated of the current message */
	struct z_stream_s *inflater;	/* the inflater while in use, or NULL */
	unsigned int dict_len;		/* bytes of window in dict */
	unsigned char *dict;		/* the parked window (2^window bytes), or NULL */
};

/* The state of a connection's wsi (NULL: not one to inflate for). */
typedef struct deflate_state *(*deflate_state_fn) (struct lws *wsi);
/* Close a connection with code and reason. */
typedef void (*deflate_refuse_fn) (struct lws *wsi, int code, const char *reason);

void		deflate_set_hooks(deflate_state_fn state_of, deflate_refuse_fn refuse);
void		deflate_answer(struct lws *wsi, struct deflate_state *s,
						   struct lws_process_html_args *args);
void		deflate_established(struct lws *wsi, struct deflate_state *s);
void		deflate_session_end(struct deflate_state *s);
int			deflate_extension(struct lws_context *context, const struct lws_extension *ext,
							  struct lws *wsi, enum lws_extension_callback_reasons reason,
							  void *user, void *in, size_t len);

#endif							/* PANKHA_DEFLATE_H */
