/*
 * fuzz_agent.c - libFuzzer target: what an agent sends on /ws/agent.
 *
 * Each input is one agent connection: a flags byte, then lines.  It is
 * established through ws.c's protocol callback (the "connected" hello, the
 * connection recorded), then each line is one WebSocket message received through
 * the same callback: its first byte says how (see below), the rest is the
 * payload.  Between messages what the bridge queued is written (the
 * WRITEABLE callback), and queries and timers are run: the connection is
 * recorded, data frames are batched and committed, acks go out.  The
 * database answers every query with an error except connection_opened
 * (connection 42, group "g") and ingest_many (every frame stored; with the
 * flags' bit 0, every other frame rejected), so errors and acks
 * both flow.  At the end the socket closes and the bridge must have
 * forgotten the agent and every frame it held: anything else aborts.
 * With the flags' bit 1, the upgrade fails after the handshake
 * filter accepted it, as lws reports that (the protocol dropped, then
 * closed), and nothing may be left of the connection.
 *
 * Line prefixes: 0x01 a binary frame; 0x02 N: the payload in fragments of
 * N % 32 + 1 bytes; 0x03 N: the same after an empty first fragment;
 * anything else: a text message in one frame.
 * --max-message is 4096 here, so messages past it are in reach.
 */
#include "harness.h"
#include "../agent_commands.h"
#include "../agent_ws.h"
#include "../agents.h"
#include "../ingest_batch.h"

#include <arpa/inet.h>
#include <string.h>

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool reject_odd;

/* Frames in a binary text[] parameter (ndim, flags, type, then the dimension). */
static int
array_count(struct db_query *q, int i)
{
	uint32_t	dim;

	if (q->nparams <= i || q->formats[i] != 1 || q->lengths[i] < 16)
		return 0;
	memcpy(&dim, q->params[i] + 12, 4);
	return (int) ntohl(dim);
}

static PGresult *
answer(struct db_query *q)
{
	if (strstr(q->sql, "pankha.connection_opened("))
	{
		const char *v[] = {"42", "g"};

		return harness_row(2, v);
	}
	if (strstr(q->sql, "pankha.ingest_many("))
	{
		int			n = array_count(q, 1);
		PGresult   *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
		PGresAttDesc attrs[4] = {{"ord"}, {"stored"}, {"sqlstate"}, {"message"}};

		if (!res || !PQsetResultAttrs(res, 4, attrs))
			abort();
		for (int r = 0; r < n; r++)
		{
			char		ord[16];
			bool		rejected = reject_odd && r % 2;

			snprintf(ord, sizeof(ord), "%d", r + 1);
			if (!PQsetvalue(res, r, 0, ord, (int) strlen(ord)) ||
				!PQsetvalue(res, r, 1, rejected ? "f" : "t", 1) ||
				!PQsetvalue(res, r, 2, rejected ? "22023" : NULL, rejected ? 5 : -1) ||
				!PQsetvalue(res, r, 3, rejected ? "data.sensors: fuzz" : NULL, rejected ? 18 : -1))
				abort();
		}
		return res;
	}
	return NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct ws_endpoint *const endpoints[] = {&agent_ws_endpoint, NULL};

	harness_init();
	srv.cfg.max_message = 4096;
	if (agents_init() || agent_commands_init())
		abort();
	ws_init(endpoints);
	return 0;
}

/* Queries, timers and writes, until nothing moves. */
static bool
settle(struct fake_wsi *w, struct ws_session *s, bool open)
{
	for (int round = 0; round < 8; round++)
	{
		int			moved = harness_answer(answer) + harness_fire_timers(round > 0);

		if (open && !harness_drain(w, s))
			return false;
		if (!moved)
			break;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake_wsi w = {0};
	struct ws_session s = {0};
	struct agent *a;
	char		selector[CRED_SELECTOR_LEN + 1] = "fuzzselector";
	bool		open = true;
	size_t		pos = 0;

	reject_odd = size && (data[0] & 1);
	w.user = &s;
	a = agent_new("fuzz-agent", selector, "127.0.0.1");
	if (!a)
		return 0;
	a->ws.ep = &agent_ws_endpoint;
	s.conn = &a->ws;
	s.z.who = agent_ws_endpoint.what;
	if (size && (data[0] & 2))
	{
		/*
		 * The upgrade fails after the filter accepted it (a bad header, the
		 * client gone): lws drops the protocol, freeing the session, and
		 * closes; the connection was never established.
		 */
		ws_callback((struct lws *) &w, LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL, &s, NULL, 0);
		ws_callback((struct lws *) &w, LWS_CALLBACK_CLOSED, &s, NULL, 0);
		ws_callback((struct lws *) &w, LWS_CALLBACK_WSI_DESTROY, NULL, NULL, 0);
		return 0;
	}
	if (ws_callback((struct lws *) &w, LWS_CALLBACK_ESTABLISHED, &s, NULL, 0))
		open = false;
	open = open && settle(&w, &s, true);

	pos = 1;					/* after the flags byte */
	while (open && pos < size)
	{
		const uint8_t *line = data + pos;
		const uint8_t *nl = memchr(line, '\n', size - pos);
		size_t		len = nl ? (size_t) (nl - line) : size - pos;
		size_t		piece = len;
		bool		empty_first = false;
		char	   *msg;

		pos += len + 1;
		w.binary = false;
		if (len && line[0] == 0x01)
		{
			w.binary = true;
			line++, len--;
		}
		else if (len >= 2 && (line[0] == 0x02 || line[0] == 0x03))
		{
			piece = line[1] % 32 + 1;
			empty_first = line[0] == 0x03;
			line += 2, len -= 2;
		}
		/* the payload in a buffer of its own size, as lws hands it over */
		msg = malloc(len ? len : 1);
		if (!msg)
			break;
		memcpy(msg, line, len);
		for (size_t off = 0, k = 0;; k++)
		{
			size_t		n = empty_first && k == 0 ? 0 : len - off < piece ? len - off : piece;

			w.first = k == 0;
			w.final = off + n >= len && !(empty_first && k == 0 && len);
			/* lws hands an empty fragment over as NULL */
			if (ws_callback((struct lws *) &w, LWS_CALLBACK_RECEIVE, &s, n ? msg + off : NULL, n))
			{
				open = false;
				break;
			}
			off += n;
			if (w.final)
				break;
		}
		free(msg);
		open = open && harness_drain(&w, &s) && settle(&w, &s, true);
	}

	settle(&w, &s, open);
	ws_callback((struct lws *) &w, LWS_CALLBACK_CLOSED, &s, NULL, 0);
	settle(&w, &s, false);
	if (agents_count() != 0 || ingest_held() != 0 || harness_pending() != 0)
	{
		fprintf(stderr, "after the close: %d agents, %zu frames held, %d queries\n",
				agents_count(), ingest_held(), harness_pending());
		abort();
	}
	return 0;
}
