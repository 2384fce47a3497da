/*
 * fuzz_ui.c - libFuzzer target: what a dashboard sends on /ws/ui.
 *
 * Each input is one dashboard connection, made as ui_filter() makes one
 * once a token checked out (this file includes ui_ws.c for its struct and
 * static functions), with the role the input's first byte picks (viewer,
 * operator, admin).  Each further line is one text message received
 * through ws.c's protocol callback; what the bridge queues is written
 * between messages.  The database answers each API message with a small
 * JSON value, command and set_setting with a row, and, when the first
 * byte's bit 2 is set, everything with an error instead; with its bit 3,
 * the upgrade fails after the filter accepted it (see fuzz_agent.c).  At the end the
 * socket closes and no dashboard, query or reference may be left.
 */
#include "harness.h"
#include "../ui_ws.c"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool all_errors;

static PGresult *
answer(struct db_query *q)
{
	if (all_errors)
		return NULL;
	if (strstr(q->sql, "pankha.send_command("))
	{
		const char *v[] = {"8c7e0b8a-3f6e-4c1e-9a55-2f4b1c7d9e01"};

		return harness_row(1, v);
	}
	if (strstr(q->sql, "pankha.set_setting("))
	{
		const char *v[] = {"3"};

		return harness_row(1, v);
	}
	if (strstr(q->sql, "::text"))
	{
		const char *v[] = {"{\"agents\":[],\"total\":0}"};

		return harness_row(1, v);
	}
	return NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct ws_endpoint *const endpoints[] = {&ui_ws_endpoint, NULL};

	harness_init();
	srv.cfg.max_message = 8192;
	if (ui_init())
		abort();
	ws_init(endpoints);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const roles[] = {"viewer", "operator", "admin"};
	struct fake_wsi w = {0};
	struct ws_session s = {0};
	struct ui_client *c;
	bool		open = true;
	size_t		pos = 0;

	if (!size)
		return 0;
	all_errors = data[0] & 4;
	c = calloc(1, sizeof(*c));
	if (!c)
		return 0;
	snprintf(c->user, sizeof(c->user), "fuzz");
	snprintf(c->role, sizeof(c->role), "%s", roles[data[0] % 3]);
	snprintf(c->selector, sizeof(c->selector), "fuzzselector");
	c->refs = 1;
	c->ws.ep = &ui_ws_endpoint;
	w.user = &s;
	s.conn = &c->ws;
	s.z.who = ui_ws_endpoint.what;
	if (data[0] & 8)
	{
		/* the upgrade fails after the filter accepted it (see fuzz_agent.c) */
		ws_callback((struct lws *) &w, LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL, &s, NULL, 0);
		ws_callback((struct lws *) &w, LWS_CALLBACK_CLOSED, &s, NULL, 0);
		ws_callback((struct lws *) &w, LWS_CALLBACK_WSI_DESTROY, NULL, NULL, 0);
		return 0;
	}
	if (ws_callback((struct lws *) &w, LWS_CALLBACK_ESTABLISHED, &s, NULL, 0))
		open = false;
	pos = 1;
	while (open && pos < size)
	{
		const uint8_t *line = data + pos;
		const uint8_t *nl = memchr(line, '\n', size - pos);
		size_t		len = nl ? (size_t) (nl - line) : size - pos;
		char	   *msg = malloc(len ? len : 1);

		pos += len + 1;
		if (!msg)
			break;
		memcpy(msg, line, len);
		w.first = w.final = true;
		w.binary = false;
		if (ws_callback((struct lws *) &w, LWS_CALLBACK_RECEIVE, &s, msg, len))
			open = false;
		free(msg);
		open = open && harness_drain(&w, &s);
		harness_answer(answer);
		open = open && harness_drain(&w, &s);
	}
	harness_answer(answer);
	ws_callback((struct lws *) &w, LWS_CALLBACK_CLOSED, &s, NULL, 0);
	harness_answer(answer);
	if (ui_count() != 0 || clients || harness_pending() != 0)
	{
		fprintf(stderr, "after the close: %d dashboards, %d queries\n", ui_count(),
				harness_pending());
		abort();
	}
	return 0;
}
