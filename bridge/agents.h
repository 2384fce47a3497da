/*
 * agents.h - agent connections (agents.c): their lifetime, the by-id
 * table of the live ones, their history in pankha.connections, and
 * replacement by a newer connection here or on another bridge.
 */
#ifndef PANKHA_AGENTS_H
#define PANKHA_AGENTS_H

#include "credentials.h"
#include "ws.h"

/*
 * One agent connection.  It lives on the heap, apart from the lws session,
 * because queries and batched frames refer to it after the socket closed.
 * Each module keeps its own fields here, as marked.
 */
struct agent
{
	struct ws_conn ws;			/* the WebSocket connection (ws.c) */
	/* agents.c */
	struct agent *hash_next;	/* chain in the by-id table */
	struct agent *all_next;		/* list of every live connection */
	struct agent *all_prev;
	char	   *agent_id;
	char		selector[CRED_SELECTOR_LEN + 1];	/* of the token it authenticated with */
	unsigned char digest[CRED_DIGEST_LEN];	/* and that token's digest */
	char	   *group;			/* its group at connect time, or NULL */
	char	   *settings;		/* its effective settings from the batch that recorded it, until sent */
	char		remote[64];		/* peer address */
	int			refs;			/* connection + queries + frames holding it */
	int64_t		connection_id;	/* pankha.connections id, 0 until known */
	int64_t		replaced_by;	/* newest connection elsewhere heard of before it was known (L10) */
	bool		closed;			/* socket closed; record when id known */
	uint64_t	frames_in, bytes_in;	/* messages received, for the history */
	/* agent_commands.c */
	bool		claim_wanted;	/* commands to fetch for it */
	bool		claiming;		/* in a claim in flight (one at a time: per-agent order) */
	bool		claim_again;	/* wanted again while claiming */
	/* ingest_batch.c */
	int			held;			/* frames of it held un-committed */
	size_t		held_bytes;		/* and their bytes, dashboard copies included (L2) */
	int			requeued;		/* of those, frames put back after a failure */
	int64_t		pending_ack;	/* highest seq committed but not acked */
	int64_t		acked;			/* highest seq acked */
	bool		ack_due;		/* frames with seq committed since the last ack */
	uint64_t	ack_mark;		/* batch being acked (marks its last frame) */
	bool		refused;		/* a frame was refused for a limit: no ack
								 * may cover it, so none is sent any more and
								 * the connection is closing (M3) */
	/* agent_ws.c */
	double		tokens;			/* rate limit bucket */
	lws_usec_t	tokens_at;		/* last refill */
	int			violations;		/* rate limit breaches this minute */
};

/* Called once an agent's connection is recorded (connection_id known). */
typedef void (*agent_opened_fn) (struct agent *a);

int			agents_init(void);
int			agents_on_opened(agent_opened_fn fn);
struct agent *agent_new(const char *agent_id, const char *selector, const char *peer);
int			agent_open(struct agent *a);
void		agent_gone(struct agent *a);
struct agent *agent_find(const char *agent_id);
struct agent *agents_first(void);
int			agents_count(void);
void		agent_release(struct agent *a);
void		agent_send(struct agent *a, const char *text, size_t len, bool is_command);
void		agent_send_json(struct agent *a, cJSON *msg, bool is_command);
void		agent_send_error(struct agent *a, const char *code, const char *message, int64_t seq);
void		agent_close(struct agent *a, int code, const char *reason);

#endif							/* PANKHA_AGENTS_H */
