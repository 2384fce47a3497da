/*
 * live.c - live data across bridges.
 *
 * A dashboard on this bridge may watch agents connected to another one.
 * The topics this bridge's dashboards subscribe to that name agents
 * ("global", "agents.<id>", "groups.<name>") are recorded in the database
 * with pankha.live_watch(bridge_id, topics, ttl): soon after they change
 * (LIVE_DEBOUNCE_US), and again every LIVE_REFRESH_US so that they do not
 * expire (LIVE_TTL: a bridge that died stops being served).  The bridge
 * ingesting a frame of a watched agent has the extension announce it on
 * NOTIFY pankha_live, delivered on commit; here it becomes the same "data"
 * message a local agent's frame is, for the subscribers of the agent, its
 * group or "global".  The extension announces nothing for agents no bridge
 * but the ingesting one watches (the connections carry pankha.bridge_id,
 * db.c); every listener hears each announcement, and the one that ingested
 * the frame (its "from"), whose dashboards have it already, ignores it.
 */
#include "live.h"
#include "db.h"

#include <string.h>

#define LIVE_TTL "30 seconds"
#define LIVE_REFRESH_US (10 * LWS_US_PER_SEC)
#define LIVE_DEBOUNCE_US (20 * LWS_USEC_PER_SEC / 1000)

static struct btimer push_timer;
static bool push_armed;
static bool push_in_flight;
static bool push_again;			/* the topics changed while a push was in flight */

static void push_cb(lws_sorted_usec_list_t *sul);

/*
 * The group of each agent of another bridge whose frames came with one,
 * so that its agent_status and command_result reach groups.<name> too
 * (ui_ws.c asks live_group() when the agent is not connected here).
 */
#define GROUP_BUCKETS 1024

struct known_group
{
	struct known_group *next;
	char		agent_id[65];
	char		group[65];
};

static struct known_group *groups_seen[GROUP_BUCKETS];

static unsigned
id_hash(const char *s)
{
	uint32_t	h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h % GROUP_BUCKETS;
}

static void
remember_group(const char *agent_id, const char *group)
{
	struct known_group **pg = &groups_seen[id_hash(agent_id)];
	struct known_group *g;

	if (strlen(agent_id) > 64 || (group && strlen(group) > 64))
		return;
	for (; *pg; pg = &(*pg)->next)
		if (!strcmp((*pg)->agent_id, agent_id))
			break;
	if (!group)
	{
		if (*pg)
		{
			g = *pg;
			*pg = g->next;
			free(g);
		}
		return;
	}
	if (!*pg && !(*pg = calloc(1, sizeof(**pg))))
		return;
	g = *pg;
	snprintf(g->agent_id, sizeof(g->agent_id), "%s", agent_id);
	snprintf(g->group, sizeof(g->group), "%s", group);
}

/* The group another bridge's frames last announced for agent_id, or NULL. */
const char *
live_group(const char *agent_id)
{
	for (struct known_group *g = groups_seen[id_hash(agent_id)]; g; g = g->next)
		if (!strcmp(g->agent_id, agent_id))
			return g->group;
	return NULL;
}

static void
schedule_push(lws_usec_t delay)
{
	if (push_armed)
		timer_cancel(&push_timer);
	push_armed = true;
	timer_schedule(&push_timer, push_cb, delay);
}

static void
push_done(struct db_query *q, PGresult *res)
{
	push_in_flight = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		blog("warn", "live_watch", "pankha.live_watch failed: %s",
			 PQresultErrorMessage(res));
		schedule_push(LWS_US_PER_SEC);
		return;
	}
	srv.m.live_watch_calls++;
	schedule_push(push_again ? 1 : LIVE_REFRESH_US);
	push_again = false;
}

/* Record the topics watched now (an empty set too: this bridge is forgotten). */
static void
push_cb(lws_sorted_usec_list_t *sul)
{
	struct sbuf topics = {0};
	struct db_query *q;

	push_armed = false;
	if (push_in_flight)
	{
		push_again = true;
		return;
	}
	ui_live_topics(&topics);
	q = db_query_new(LANE_GENERAL, "SELECT pankha.live_watch($1, $2, '" LIVE_TTL "')",
					 push_done, NULL);
	if (!q || db_query_param(q, srv.bridge_id, strlen(srv.bridge_id)) ||
		db_query_param_sbuf(q, &topics))
	{
		if (q)
			db_query_free(q);
		sbuf_free(&topics);
		schedule_push(LWS_US_PER_SEC);
		return;
	}
	push_in_flight = true;
	push_again = false;
	db_submit(q);
}

/* ui_ws.c: a topic naming agents got its first subscriber or lost its last. */
void
live_topics_changed(void)
{
	if (push_in_flight)
		push_again = true;
	else if (!push_armed || push_timer.deadline > now_us() + LIVE_DEBOUNCE_US)
		schedule_push(LIVE_DEBOUNCE_US);
}

/*
 * NOTIFY pankha_live {"from","agent_id","group","frame"} (or "frame": null,
 * "oversize": true when it did not fit): to the agent's subscribers as
 * {"type":"data","agent_id","data"}, the message of a local agent's frame.
 */
static void
on_live(const char *channel, const char *payload)
{
	cJSON	   *p = cJSON_Parse(payload);
	const char *agent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "agent_id"));
	const char *group = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "group"));
	cJSON	   *frame = cJSON_GetObjectItemCaseSensitive(p, "frame");
	cJSON	   *data = frame;
	cJSON	   *msg;
	char	   *text;

	if (!agent || !frame)
	{
		blog("warn", "live", "pankha_live payload without agent_id or frame");
		cJSON_Delete(p);
		return;
	}
	/* every bridge hears every announcement: not those of our own frames */
	if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "from")) ?: "", srv.bridge_id))
	{
		cJSON_Delete(p);
		return;
	}
	srv.m.live_received++;
	remember_group(agent, group);
	/* the frame as the agent sent it: {"type":"data","data":{...}} */
	if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(frame, "data")))
		data = cJSON_GetObjectItemCaseSensitive(frame, "data");
	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", "data");
	cJSON_AddStringToObject(msg, "agent_id", agent);
	cJSON_AddItemReferenceToObject(msg, "data", data);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "oversize")))
		cJSON_AddTrueToObject(msg, "oversize");
	text = cJSON_PrintUnformatted(msg);
	if (text)
		ui_deliver_agent(agent, group, text, strlen(text));
	free(text);
	cJSON_Delete(msg);
	cJSON_Delete(p);
}

/* After each (re)connect of the LISTEN: record the topics again at once. */
static void
on_listen_ready(void)
{
	schedule_push(1);
}

/* Register with the database; called before db_init(). */
int
live_init(void)
{
	if (db_listen("pankha_live", on_live) || db_on_listen_ready(on_listen_ready))
		return -1;
	return 0;
}
