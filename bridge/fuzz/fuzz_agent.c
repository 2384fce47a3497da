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
 * database answers connections_opened (connection 42, group "g" and
 * settings), connection_opened, connections_closed, claim_commands (the
 * first claim brings one command, command id 7001, whose type and
 * parameters the flags choose; later claims none) and ingest_many (every
 * frame stored; with the flags' bit 0, every other frame rejected); every
 * other query fails.  The flags' bit 2 fails the connection batch and
 * every claim instead (the one-by-one fallback, claims put back and
 * retried), bit 3 answers the connection with an SQLSTATE of its own
 * (the agent is closed), so errors, acks and commands all flow.  At the end the socket closes and the bridge must have
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

static bool reject_odd, db_fails, open_refused;
static int	claims;
static uint8_t command_kind;

/* One row of text columns; NULL values stay NULL. */
static PGresult *
rows_of(int ncols, const char *const *names, const char *const *values)
{
	PGresult   *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[8] = {{0}};

	if (!res || ncols > 8)
		abort();
	for (int i = 0; i < ncols; i++)
	{
		attrs[i].name = (char *) names[i];
		attrs[i].typid = 25;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	if (!PQsetResultAttrs(res, ncols, attrs))
		abort();
	for (int i = 0; i < ncols && values; i++)
		if (!PQsetvalue(res, 0, i, (char *) values[i], values[i] ? (int) strlen(values[i]) : -1))
			abort();
	return res;
}

/* The claimed command: a type and parameters of the flags' choosing. */
static PGresult *
claimed(void)
{
	static const char *const names[] = {"command_id", "agent_id", "command_type",
	"parameters", "priority", "attempts"};
	static const char *const kinds[][2] = {
		{"set_fan_speed", "{\"fan_id\":\"fan1\",\"speed\":40}"},
		{"update_settings", "{\"update_interval\":5,\"command_id\":\"x\"}"},
		{"emergency_stop", "{}"},
		{"set_profile", NULL},
	};
	const char *const *k = kinds[command_kind % 4];
	const char *v[] = {"7001", "fuzz-agent", k[0], k[1], command_kind & 4 ? NULL : "high", "1"};

	return rows_of(6, names, v);
}

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
	if (strstr(q->sql, "pankha.connections_opened("))
	{
		static const char *const names[] = {"ord", "connection_id", "group_name",
		"settings", "sqlstate", "message"};
		const char *ok[] = {"1", "42", "g", "{\"update_interval\":3,\"fan_step\":5}", NULL, NULL};
		const char *refused[] = {"1", NULL, NULL, NULL, "22023", "agent_id: fuzz"};

		if (db_fails)
			return NULL;
		return rows_of(6, names, open_refused ? refused : ok);
	}
	if (strstr(q->sql, "pankha.connections_closed("))
	{
		static const char *const names[] = {"connections_closed"};
		const char *v[] = {"1"};

		return rows_of(1, names, v);
	}
	if (strstr(q->sql, "pankha.claim_commands("))
	{
		static const char *const names[] = {"command_id", "agent_id", "command_type",
		"parameters", "priority", "attempts"};

		if (db_fails)
			return NULL;
		return claims++ ? rows_of(6, names, NULL) : claimed();
	}
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
	db_fails = size && (data[0] & 4);
	open_refused = size && (data[0] & 8);
	command_kind = size ? data[0] >> 4 : 0;
	claims = 0;
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
