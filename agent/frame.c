/*
 * frame.c - the messages built from the agent's state: the data frame
 * (sensors, fans, systemHealth, within the protocol's limits on entries)
 * and the status message.  What is sent when is link.c's business.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static double round1(double v);
static bool meta_changed(const struct pk_sensor *s);
static const char *wire_status(const char *status);
static bool is_cpu_package(const struct pk_sensor *s);
static int	sensor_rank(const void *x, const void *y, void *arg);
static int	fan_rank(const void *x, const void *y, void *arg);
static int	select_entries(int count, const bool *want, int n, bool *keep,
						   int (*rank) (const void *, const void *, void *), void *arg);

static double
round1(double v)
{
	return (double) pk_round(v * 10) / 10;
}

/*
 * The protocol's fan status words are ok, warning, critical, error,
 * failed, stalled, stopped and unknown; map the agent's own to them (the
 * details are in the log and the status message).
 */
static const char *
wire_status(const char *status)
{
	static const struct
	{
		const char *ours;
		const char *wire;
	}			map[] = {
		{"ok", "ok"}, {"auto", "ok"}, {"emergency", "critical"}, {"emergency_stop", "warning"},
		{"failsafe", "warning"}, {"reasserted", "warning"}, {"error", "error"},
		{"stalled", "stalled"}, {"stopped", "stopped"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(status, map[i].ours) == 0)
			return map[i].wire;
	return "unknown";
}

/*
 * Which entries go into a frame when a host has more than the protocol
 * allows (review L4: a frame over the limit is refused whole, so such a
 * host stored nothing).  Sensors: the CPU package first, then the hottest.
 * Fans: those the agent can drive first, then the fastest.
 */
static bool
is_cpu_package(const struct pk_sensor *s)
{
	return strcmp(s->kind, "cpu") == 0 &&
		(strstr(s->id, "package") || strstr(s->id, "tctl") || strstr(s->id, "tdie"));
}

static int
sensor_rank(const void *x, const void *y, void *arg)
{
	const struct pk_sensor *sensors = arg;
	const struct pk_sensor *a = &sensors[*(const int *) x],
			   *b = &sensors[*(const int *) y];

	if (is_cpu_package(a) != is_cpu_package(b))
		return is_cpu_package(a) ? -1 : 1;
	return a->temp > b->temp ? -1 : a->temp < b->temp ? 1 : 0;
}

static int
fan_rank(const void *x, const void *y, void *arg)
{
	const struct pk_fan *fans = arg;
	const struct pk_fan *a = &fans[*(const int *) x],
			   *b = &fans[*(const int *) y];

	if ((a->pwm_path != NULL) != (b->pwm_path != NULL))
		return a->pwm_path ? -1 : 1;
	return a->rpm > b->rpm ? -1 : a->rpm < b->rpm ? 1 : 0;
}

/*
 * Mark in keep[] the n entries (of count, those with want[i]) that rank
 * first; returns how many were left out.
 */
static int
select_entries(int count, const bool *want, int n, bool *keep,
			   int (*rank) (const void *, const void *, void *), void *arg)
{
	int		   *order = malloc(sizeof(int) * (size_t) (count ? count : 1));
	int			m = 0;

	for (int i = 0; i < count; i++)
		keep[i] = want[i];
	for (int i = 0; i < count; i++)
		if (want[i])
			m++;
	if (m <= n)
	{
		free(order);
		return 0;
	}
	if (!order)
	{
		/* Out of memory: the first n, rather than a frame refused whole. */
		for (int i = 0, k = 0; i < count; i++)
			keep[i] = want[i] && k++ < n;
		return m - n;
	}
	m = 0;
	for (int i = 0; i < count; i++)
		if (want[i])
			order[m++] = i;
	qsort_r(order, (size_t) m, sizeof(int), rank, arg);
	for (int i = n; i < m; i++)
		keep[order[i]] = false;
	free(order);
	return m - n;
}

/*
 * Has a sensor's static metadata (type, max_temp, crit_temp) changed since
 * the last frame that carried it?  The server keeps what it was last told
 * for a field a frame leaves out (docs/protocol.md), so a frame carries it
 * only then, or while a->meta_settled is false: until the first frame
 * built on a connection, and in every frame built without one (those wait
 * in the buffer and may go by the HTTP sync).  A sensor found by a rescan
 * has not been sent yet.  A limit that disappears cannot be told by
 * leaving it out; the server keeps the old one.
 */
static bool
meta_changed(const struct pk_sensor *s)
{
	if (!s->meta_sent || !s->sent_kind || strcmp(s->sent_kind, s->kind) != 0)
		return true;
	if (s->has_max && !(round1(s->max_temp) == s->sent_max))
		return true;
	if (s->has_crit && !(round1(s->crit_temp) == s->sent_crit))
		return true;
	return false;
}

/*
 * Build the data object of one frame from the current readings; sensors'
 * static fields only where meta_changed() says (connected: the frame is
 * built while a connection is up, after which unchanged ones are left out).
 */
char *
pk_build_data(struct pk_agent *a, int64_t seq, bool connected)
{
	cJSON	   *d = cJSON_CreateObject();
	cJSON	   *sensors,
			   *fans,
			   *health;
	char	   *out = NULL;
	bool		ok;
	int			n = a->hw.nsensors > a->hw.nfans ? a->hw.nsensors : a->hw.nfans;
	bool	   *want = calloc((size_t) n + 1, sizeof(bool));
	bool	   *keep_s = calloc((size_t) a->hw.nsensors + 1, sizeof(bool));
	bool	   *keep_f = calloc((size_t) a->hw.nfans + 1, sizeof(bool));
	int			omit_s,
				omit_f;

	if (!d || !want || !keep_s || !keep_f)
	{
		cJSON_Delete(d);
		free(want);
		free(keep_s);
		free(keep_f);
		return NULL;
	}
	for (int i = 0; i < a->hw.nsensors; i++)
		want[i] = a->hw.sensors[i].valid;
	omit_s = select_entries(a->hw.nsensors, want, PK_WIRE_MAX_SENSORS, keep_s, sensor_rank, a->hw.sensors);
	for (int i = 0; i < a->hw.nfans; i++)
		want[i] = true;
	omit_f = select_entries(a->hw.nfans, want, PK_WIRE_MAX_FANS, keep_f, fan_rank, a->hw.fans);
	if (omit_s != a->sensors_omitted || omit_f != a->fans_omitted)
		pk_log(omit_s || omit_f ? PK_LOG_WARN : PK_LOG_INFO,
			   "this host has more than the protocol carries (%d sensors, %d fans a frame): "
			   "leaving out %d sensor(s) and %d fan(s)", PK_WIRE_MAX_SENSORS, PK_WIRE_MAX_FANS,
			   omit_s, omit_f);
	a->sensors_omitted = omit_s;
	a->fans_omitted = omit_f;
	ok = cJSON_AddStringToObject(d, "agentId", a->agent_id) &&
		cJSON_AddNumberToObject(d, "timestamp", (double) pk_now_ms()) &&
		cJSON_AddNumberToObject(d, "seq", (double) seq) &&
		(sensors = cJSON_AddArrayToObject(d, "sensors")) != NULL &&
		(fans = cJSON_AddArrayToObject(d, "fans")) != NULL &&
		(health = cJSON_AddObjectToObject(d, "systemHealth")) != NULL;
	for (int i = 0; ok && i < a->hw.nsensors; i++)
	{
		struct pk_sensor *s = &a->hw.sensors[i];
		cJSON	   *o;
		bool		meta;

		if (!keep_s[i])
			continue;
		meta = !a->meta_settled || meta_changed(s);
		ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(sensors, o) &&
			cJSON_AddStringToObject(o, "id", s->id) &&
			cJSON_AddNumberToObject(o, "temperature", round1(s->temp)) &&
			(!meta || cJSON_AddStringToObject(o, "type", s->kind)) &&
			(!meta || !s->has_max || cJSON_AddNumberToObject(o, "max_temp", round1(s->max_temp))) &&
			(!meta || !s->has_crit || cJSON_AddNumberToObject(o, "crit_temp", round1(s->crit_temp)));
		if (ok && meta)
		{
			s->meta_sent = true;
			s->sent_kind = s->kind;
			s->sent_max = s->has_max ? round1(s->max_temp) : NAN;
			s->sent_crit = s->has_crit ? round1(s->crit_temp) : NAN;
		}
	}
	for (int i = 0; ok && i < a->hw.nfans; i++)
	{
		struct pk_fan *f = &a->hw.fans[i];
		double		speed = f->pwm >= 0 ? (double) pk_round(f->pwm * 100.0 / 255.0) : 0;
		const char *status = f->status;
		cJSON	   *o;

		if (!keep_f[i])
			continue;
		if (f->pwm > 25 && f->rpm_path && f->rpm == 0)
			status = "stalled";
		else if (f->pwm == 0 && f->rpm_path && f->rpm == 0)
			status = "stopped";
		status = wire_status(status);
		ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(fans, o) &&
			cJSON_AddStringToObject(o, "id", f->id) &&
			cJSON_AddNumberToObject(o, "speed", speed) &&
			cJSON_AddNumberToObject(o, "rpm", (double) f->rpm) &&
			cJSON_AddNumberToObject(o, "targetSpeed", f->target >= 0 ? round1(f->target) : speed) &&
			cJSON_AddStringToObject(o, "status", status);
	}
	if (ok)
	{
		struct pk_proc *p = &a->proc;

		ok = (p->cpu_usage < 0 || cJSON_AddNumberToObject(health, "cpuUsage", round1(p->cpu_usage))) &&
			(p->mem_usage < 0 || cJSON_AddNumberToObject(health, "memoryUsage", round1(p->mem_usage))) &&
			cJSON_AddNumberToObject(health, "agentUptime", (double) ((pk_mono_ms() - a->started_ms) / 1000)) &&
			(p->disk_usage < 0 || cJSON_AddNumberToObject(health, "diskUsage", round1(p->disk_usage))) &&
			(p->rx_rate < 0 || cJSON_AddNumberToObject(health, "netRxBytesPerSec", (double) pk_round(p->rx_rate))) &&
			(p->tx_rate < 0 || cJSON_AddNumberToObject(health, "netTxBytesPerSec", (double) pk_round(p->tx_rate))) &&
			(p->load1 < 0 || cJSON_AddNumberToObject(health, "load1", p->load1));
	}
	if (ok)
		out = cJSON_PrintUnformatted(d);
	if (out && connected)
		a->meta_settled = true;
	cJSON_Delete(d);
	free(want);
	free(keep_s);
	free(keep_f);
	return out;
}

/* The data of a {"type":"status"} message: uptime, memory and buffer figures. */
char *
pk_build_status(struct pk_agent *a)
{
	char	   *text = NULL;
	long		rss = pk_self_rss_kb("/proc");

	if (asprintf(&text, "{\"type\":\"status\",\"data\":{\"uptime_seconds\":%" PRId64
				 ",\"memory_usage_mb\":%.1f,\"agent_version\":\"%s\",\"buffered_frames\":%zu,"
				 "\"dropped_frames\":%" PRIu64 ",\"fan_overrides\":%lu,\"emergency\":%s,"
				 "\"failsafe\":%s,\"sensors_omitted\":%d,\"fans_omitted\":%d}}",
				 (pk_mono_ms() - a->started_ms) / 1000, rss > 0 ? rss / 1024.0 : 0,
				 PK_AGENT_VERSION, a->buf.count, a->buf.dropped, a->reasserts,
				 a->emergency || a->emergency_stop ? "true" : "false", a->failsafe ? "true" : "false",
				 a->sensors_omitted, a->fans_omitted) < 0)
		return NULL;
	return text;
}
