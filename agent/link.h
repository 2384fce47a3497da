/*
 * link.h - what the parts of the agent's link to the bridge share: the
 * link state, the write queue and the one-request HTTP client.  link.c is
 * the WebSocket link and its pacing, http.c the HTTP client, sync.c the
 * HTTP fallback and enroll.c enrollment; the rest of the agent sees only
 * the pk_link_* functions of agent.h.
 */
#ifndef PANKHA_AGENT_LINK_H
#define PANKHA_AGENT_LINK_H

#include <signal.h>

#include <libwebsockets.h>

#include "agent.h"

/* Largest message we accept from the server. */
#define RX_MAX (1024 * 1024)
/* Largest HTTP response body we accept. */
#define HTTP_RESP_MAX (4 * 1024 * 1024)
/* Frames per sync request. */
#define SYNC_BATCH 100
/*
 * Bytes of frames per sync request, well under the bridge's default
 * --max-body (1 MiB); a 413 halves it until the server takes the batch.
 */
#define SYNC_MAX_BYTES (512 * 1024)

/* A message waiting to be written on the WebSocket (or synced). */
struct out_msg
{
	struct out_msg *next;
	char	   *text;			/* the whole message, or for acks the data object */
	size_t		len;
	bool		is_ack;			/* command_ack: survives disconnects */
	bool		in_sync;		/* part of the sync request in flight */
};

/* One HTTP request (sync or register) and its response. */
struct http_req
{
	struct pk_link *link;
	struct lws *wsi;			/* the connection serving it */
	char	   *path;			/* request path */
	char	   *auth;			/* "Bearer ..." */
	char	   *body;			/* request body */
	size_t		body_len;
	char	   *resp;			/* response body so far */
	size_t		resp_len;
	int			status;			/* HTTP status, 0 before headers */
	bool		in_flight;		/* started, not finished */
	int64_t		last_seq;		/* sync: highest seq in the request */
	int64_t		seqs[SYNC_BATCH];	/* sync: seq of each frame sent, in order */
	int			nseqs;
	void		(*done) (struct http_req *r, bool ok);
};

struct pk_link
{
	struct pk_agent *a;
	struct lws_context *ctx;
	char	   *url_copy;		/* server_url, cut up by lws_parse_uri */
	const char *host;			/* server host */
	int			port;			/* server port */
	bool		tls;			/* wss/https */
	char	   *ws_path;		/* /ws/agent?agent_id=... */
	char	   *http_base;		/* base path for /api/... */
	char	   *auth;			/* "Bearer TOKEN" */
	struct lws *ws;				/* WebSocket connection, connecting or up */
	bool		ws_up;			/* handshake done */
	int			attempt;		/* failed connects in a row (backoff) */
	int			hs_failures;	/* failed handshakes in a row (fallback) */
	bool		http_mode;		/* syncing over HTTP */
	int64_t		last_rx_ms;		/* monotonic: last message from the server */
	int64_t		last_contact_ms;	/* monotonic: last sign the server is there */
	int64_t		sent_upto;		/* highest seq written on this connection */
	int64_t		next_tick_ms;	/* monotonic: when the next data frame is due */
	struct out_msg *q_head;		/* messages to write, oldest first */
	struct out_msg *q_tail;
	char	   *rx;				/* message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	struct z_stream_s *zin;		/* inflater of the server's messages (inflate.c) */
	unsigned char *zout;		/* what one piece of payload inflated to */
	size_t		zout_cap;
	bool		z_in_message;	/* receiving a compressed message */
	size_t		z_inflated;		/* bytes inflated of it */
	int			z_refuse_code;	/* close code when the stream cannot go on, 0 if it can */
	const char *z_refuse_reason;
	unsigned char *tx;			/* LWS_PRE + message scratch */
	size_t		tx_cap;
	struct http_req sync;		/* the sync request */
	struct http_req reg;		/* the enrollment request */
	size_t		sync_max_bytes; /* frame bytes per sync request now */
	bool		stopping;		/* leave the loop */
	int			exit_code;		/* of pk_link_run */
	uint64_t	bytes_out;		/* payload bytes written (WS + HTTP bodies) */
	uint64_t	bytes_in;		/* payload bytes read */
	double		rate_per_min;	/* our message budget, 0 = unlimited */
	double		tokens;			/* messages we may send now */
	int64_t		tokens_ms;		/* monotonic time tokens was computed */
	bool		greeted;		/* "connected" seen on this connection */
	size_t		max_message;	/* largest message the server takes, 0 = unknown */
	int64_t		hold_until_ms;	/* wait for "connected" until then */
	lws_sorted_usec_list_t sul_tick;	/* data frames */
	lws_sorted_usec_list_t sul_ping;	/* keep-alive */
	lws_sorted_usec_list_t sul_connect; /* reconnect after backoff */
	lws_sorted_usec_list_t sul_sync;	/* HTTP fallback cadence */
	lws_sorted_usec_list_t sul_sim; /* in-process simulator */
	lws_sorted_usec_list_t sul_status;	/* status messages */
	lws_sorted_usec_list_t sul_pace;	/* resume writing after pacing */
};

/* inflate.c: permessage-deflate with the server's messages inflated by zlib */
void		pk_inflate_reset(struct pk_link *l);
int			pk_inflate_extension(struct lws_context *context, const struct lws_extension *ext,
								 struct lws *wsi, enum lws_extension_callback_reasons reason,
								 void *user, void *in, size_t len);

/* SIGTERM/SIGINT seen (link.c); the enrollment loop stops on it too. */
extern volatile sig_atomic_t link_stop_signal;

/* link.c */
int64_t		link_usec(double seconds);
void		link_request_write(struct pk_link *l);
int			link_queue_msg(struct pk_link *l, char *text, bool is_ack);
void		link_queue_ack(struct pk_link *l, cJSON *ack);
void		link_unlink_msg(struct pk_link *l, struct out_msg *m);
void		link_handle_command(struct pk_link *l, const cJSON *data);
void		link_apply_config(struct pk_link *l, const cJSON *data);

/* http.c */
int			http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
						  void *in, size_t len);
int			http_start(struct pk_link *l, struct http_req *r);

/* sync.c */
void		sync_start(struct pk_link *l);
void		sync_on_timer(lws_sorted_usec_list_t *sul);

#endif							/* PANKHA_AGENT_LINK_H */
