/*
 * bridge.h - declarations of the two endpoints until they get headers of
 * their own.
 */
#ifndef PANKHA_BRIDGE_H
#define PANKHA_BRIDGE_H

#include "server.h"
#include "db.h"
#include "credentials.h"
#include "ws.h"
#include "http_api.h"
#include "tls.h"

/* ---------------------------------------------------------------- agents */

/*
 * One agent connection.  It lives on the heap, apart from the lws session,
 * because queries and batched frames refer to it after the socket closed.
 */
struct agent
{
	struct ws_conn ws;			/* the WebSocket connection (ws.c) */
	struct agent *hash_next;	/* chain in the by-id table */
	struct agent *all_next;		/* list of every live connection */
	struct agent *all_prev;
	char	   *agent_id;
	char		selector[CRED_SELECTOR_LEN + 1];	/* of the token it authenticated with */
	char	   *group;			/* its group at connect time, or NULL */
	char		remote[64];		/* peer address */
	int			refs;			/* wsi + queries + frames holding it */
	int64_t		connection_id;	/* pankha.connections id, 0 until known */
	bool		closed;			/* socket closed; record when id known */
	bool		claim_wanted;	/* commands to fetch for it */
	int			held;			/* frames of it held un-committed */
	int			requeued;		/* of those, frames put back after a failure */
	int64_t		pending_ack;	/* highest seq committed but not acked */
	int64_t		acked;			/* highest seq acked */
	bool		ack_due;		/* frames with seq committed since the last ack */
	uint64_t	ack_mark;		/* batch being acked (marks its last frame) */
	double		tokens;			/* rate limit bucket */
	lws_usec_t	tokens_at;		/* last refill */
	int			violations;		/* rate limit breaches this minute */
	uint64_t	frames_in, bytes_in;
};

struct agent *agent_find(const char *agent_id);
void		agent_release(struct agent *a);
void		agent_send(struct agent *a, const char *text, size_t len, bool is_command);
void		agent_close(struct agent *a, int code, const char *reason);
void		agent_want_commands(struct agent *a);
int			agents_init(void);
void		agents_flush(void);
int			agents_count(void);
size_t		ingest_held(void);

extern const struct ws_endpoint agent_ws_endpoint;

/* ---------------------------------------------------------------- ui */

extern const struct ws_endpoint ui_ws_endpoint;
void		ui_broadcast(const char *agent_id, const char *group, const char *text, size_t len);
int			ui_init(void);
struct ui_client;
int			ui_count(void);
bool		ui_any(void);

#endif							/* PANKHA_BRIDGE_H */
