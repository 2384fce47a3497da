/*
 * ws.h - the one WebSocket layer under /ws/agent and /ws/ui (ws.c).
 *
 * An endpoint is a row: its path and the hooks its connections need.
 * Everything the two endpoints do alike - admission and refusal at the
 * handshake, send queues written only in WRITEABLE, close with a code,
 * reassembly of fragments within --max-message, rx flow control - is done
 * here, once.
 */
#ifndef PANKHA_WS_H
#define PANKHA_WS_H

#include "server.h"
#include "deflate.h"

/* One queued outgoing WebSocket message, with LWS_PRE bytes of headroom. */
struct outmsg
{
	struct outmsg *next;
	size_t		len;
	lws_usec_t	queued_at;		/* for the command delivery histogram */
	bool		is_command;		/* counts as a pushed command when written */
	char	   *trace;			/* --verbose 2: a command's stage times, logged when written */
	unsigned char data[];		/* LWS_PRE headroom, then len bytes */
};

/* A FIFO of outgoing messages for one connection. */
struct outq
{
	struct outmsg *head;
	struct outmsg *tail;
	size_t		bytes;			/* payload bytes queued */
};

int			outq_push(struct outq *q, const char *text, size_t len, bool is_command);
struct outmsg *outq_pop(struct outq *q);
void		outq_clear(struct outq *q);
int			outq_write_one(struct lws *wsi, struct outq *q, uint64_t *frames_out,
						   uint64_t *bytes_out);

struct ws_conn;

/* One WebSocket endpoint; the rows are listed in main.c. */
struct ws_endpoint
{
	const char *path;			/* request path, e.g. "/ws/agent" */
	const char *what;			/* "an agent", for logs */
	const char *slow_reason;	/* close reason when the client does not read */

	/*
	 * The handshake, after ws.c admitted it: 0 with *conn set to accept,
	 * otherwise the value of ws_refuse().
	 */
	int			(*filter) (struct lws *wsi, const char *peer, struct ws_conn **conn);
	/* The upgrade completed (c->wsi is set); -1 closes the connection. */
	int			(*established) (struct ws_conn *c);
	/* One complete message (binary: it came in binary frames). */
	void		(*message) (struct ws_conn *c, const char *text, size_t len, bool binary);
	/* The socket closed (c->wsi is NULL, close_code set); c may live on. */
	void		(*closed) (struct ws_conn *c);
	/* Accepted by filter, but never established: free c. */
	void		(*discard) (struct ws_conn *c);
	/* Optional: the send queue passed --max-queued-out and was freed. */
	void		(*dropped) (struct ws_conn *c);
	/* Its filter caps its connections itself: not counted in --max-connections. */
	bool		own_budget;
};

/*
 * What every WebSocket connection has, embedded in the endpoint's own
 * struct (struct agent, struct ui_client); lws_container_of gets back.
 */
struct ws_conn
{
	const struct ws_endpoint *ep;
	struct ws_conn *next;		/* every established connection */
	struct ws_conn *prev;
	struct lws *wsi;			/* NULL until established and once closed */
	struct outq out;			/* what waits for WRITEABLE */
	int			close_code;		/* close to send (0: none) */
	char		close_reason[64];
	bool		close_sent;		/* our close frame is written: lingering (ws.c) */
	bool		close_shut;		/* and all of it went out: lingering */
	size_t		linger_bytes;	/* payload discarded since the close was decided */
	bool		rx_paused;		/* lws_rx_flow_control(0) in force */
	lws_usec_t	last_rx;		/* last payload received */
	unsigned char *rx;			/* the message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	uint64_t	frames_out, bytes_out;
};

/* The pss of the WebSocket protocols. */
struct ws_session
{
	struct deflate_state z;		/* permessage-deflate of this connection */
	struct ws_conn *conn;		/* set once the filter accepted */
};

void		ws_init(const struct ws_endpoint *const *endpoints);
void		ws_send(struct ws_conn *c, const char *text, size_t len, bool is_command);
void		ws_send_json(struct ws_conn *c, cJSON *msg, bool is_command);
void		ws_trace_last(struct ws_conn *c, char *trace);
void		ws_close(struct ws_conn *c, int code, const char *reason);
void		ws_close_all(int code, const char *reason);
void		ws_pause_rx(struct ws_conn *c, bool pause);
int			ws_refuse(struct lws *wsi, unsigned int status, const char *message);
int			ws_count(void);
int			ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
						void *user, void *in, size_t len);

/* Both subprotocols go to the same callback; the path picks the endpoint. */
#define WS_PROTOCOLS \
	{"pankha", ws_callback, sizeof(struct ws_session), 1024, 0, NULL, 0}, \
	{"pankha-ui", ws_callback, sizeof(struct ws_session), 1024, 0, NULL, 0}

#endif							/* PANKHA_WS_H */
