/*
 * heartbeat.c - tell the database this bridge is alive.
 *
 * Every --heartbeat-interval seconds the bridge calls pankha.bridge_beat()
 * with its id and the name of this run.  A bridge that stops beating (it
 * was killed, its host died) has its open connection rows closed by the
 * worker or by the next beat of another bridge, so its agents do not stay
 * "online" for ever.  When this run itself was declared dead (its database
 * connection was away longer than three beats while the server was up),
 * its agents' rows were closed already: it closes their sockets with 1012
 * so they connect again and are recorded again.
 */
#include "heartbeat.h"

#include "agents.h"
#include "db.h"
#include "server.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct btimer beat_timer;
static char instance[64];
static bool in_flight;			/* one beat at a time, even while the database is away */
static bool stopping;

static void beat_cb(lws_sorted_usec_list_t *sul);

static void
beat_done(struct db_query *q, PGresult *res)
{
	in_flight = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		blog("warn", "heartbeat", "pankha.bridge_beat: %s", PQresultErrorMessage(res));
		return;
	}
	srv.m.heartbeats++;
	if (!strcmp(PQgetvalue(res, 0, 0), "t"))
	{
		int			n = 0;

		/* our rows were closed for us: have every agent connect again */
		for (struct agent *a = agents_first(); a; a = a->all_next)
		{
			agent_close(a, 1012, "bridge was declared dead");
			n++;
		}
		srv.m.heartbeat_expired++;
		blog("warn", "heartbeat", "this bridge had been declared dead (no beat reached the "
			 "database in time): closing its %d agent connections so they are recorded again", n);
	}
	if (!PQgetisnull(res, 0, 1) && strcmp(PQgetvalue(res, 0, 1), "0"))
		blog("warn", "heartbeat", "closed %s connections of bridges that stopped beating",
			 PQgetvalue(res, 0, 1));
}

static void
beat(void)
{
	struct db_query *q;
	char		ms[16];

	if (in_flight || stopping)
		return;
	q = db_query_new(LANE_GENERAL, "SELECT expired, closed FROM pankha.bridge_beat($1, $2, $3)",
					 beat_done, NULL);
	snprintf(ms, sizeof(ms), "%d", srv.cfg.heartbeat_interval_s * 1000);
	if (!q || db_query_param(q, srv.bridge_id, strlen(srv.bridge_id)) ||
		db_query_param(q, instance, strlen(instance)) || db_query_param(q, ms, strlen(ms)))
	{
		if (q)
			db_query_free(q);
		return;
	}
	in_flight = true;
	db_submit(q);
}

static void
beat_cb(lws_sorted_usec_list_t *sul)
{
	beat();
	if (!stopping)
		timer_schedule(&beat_timer, beat_cb, (lws_usec_t) srv.cfg.heartbeat_interval_s * LWS_US_PER_SEC);
}

/* The first beat waits in the queue for the database; then one per interval. */
int
heartbeat_init(void)
{
	if (srv.cfg.heartbeat_interval_s <= 0)
		return 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(instance, sizeof(instance), "%d@%lld.%09ld", (int) getpid(), (long long) ts.tv_sec, ts.tv_nsec);
	beat();
	timer_schedule(&beat_timer, beat_cb, (lws_usec_t) srv.cfg.heartbeat_interval_s * LWS_US_PER_SEC);
	return 0;
}

void
heartbeat_shutdown(void)
{
	stopping = true;
	timer_cancel(&beat_timer);
}
