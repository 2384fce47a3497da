/*
 * control.c - fan safety, commands and profiles.
 *
 * Fans are hardware, so every value the agent writes goes through one
 * function, drive_fan(), after these rules, in this order:
 *   1. any sensor at/above emergency_temp (or its own crit) -> 100 %, as
 *      does a latched emergency_stop, and for one fan any sensor at/above
 *      that fan's own emergency_temp; this ignores max_speed and even
 *      enable_fan_control;
 *   2. a fan left to firmware (auto) is not written;
 *   3. the wanted speed comes from set_fan_speed or the fan's profile;
 *   4. when the server has been lost beyond the grace, the failsafe speed is
 *      a floor for every fan the agent drives (profiles keep running);
 *   5. the result is clamped to the fan's [min_speed, max_speed].
 * The floors come from this host's own configuration (min-speed,
 * failsafe-speed, emergency-temp: struct pk_host_limits), which nothing
 * remote can make less safe: a fan's min_speed is the larger of the host's
 * and the limits an admin set in the catalog (config_update "fans",
 * apply_profile), limits inside set_fan_speed only narrow that one
 * command, the server's failsafe_speed only raises the host's and its
 * emergency_temp only lowers it.  A compromised bridge, a MITM on ws:// or
 * an operator token can therefore not stop a fan below the host's floor
 * (security review M1).
 * pwmN_enable is saved before the first write and restored on exit, as
 * lm-sensors' fancontrol does.  A pwm or pwm_enable value changed behind our
 * back is written again at the next tick and counted.
 */
#include <errno.h>
#include <math.h>			/* isfinite, fabs: compiler built-ins */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

/* Read-back may differ by driver rounding; more than this is an override. */
#define PWM_TOLERANCE 2
#define MAX_PROFILE_POINTS 64

static bool get_number(const cJSON *item, double *out);
static int	drive_fan(struct pk_agent *a, struct pk_fan *f, double want, const char *status,
					  char *err, size_t errlen);
static void release_fan(struct pk_agent *a, struct pk_fan *f);
static int	control_apply(struct pk_agent *a, char *err, size_t errlen);
static double profile_step(struct pk_agent *a, struct pk_fan *f);
static int	parse_profile(struct pk_agent *a, const cJSON *params, struct pk_profile **out,
						  char *err, size_t errlen);
static int	parse_fan_limits(const cJSON *fans, struct pk_fan_limit **out, int *nout,
							 char *err, size_t errlen);
static struct pk_recent_cmd *recent_find(struct pk_agent *a, const char *id);
static void recent_add(struct pk_agent *a, const char *id, bool success, const char *error);
static char *iso_now(char *buf, size_t len);

/* The protocol defaults, used until the server's first config_update. */
void
pk_settings_defaults(struct pk_settings *s)
{
	s->update_interval = 3;
	s->emergency_temp = 85;
	s->failsafe_speed = 70;
	s->fan_step = 5;
	s->hysteresis = 3;
	s->log_level = PK_LOG_INFO;
	s->enable_fan_control = true;
}

/* The host's limits before agent.conf and the flags change them. */
void
pk_host_limits_defaults(struct pk_host_limits *h)
{
	h->min_speed = 0;
	h->fans = NULL;
	h->nfans = 0;
	h->emergency_temp = 85;
	h->failsafe_speed = 70;
}

/*
 * One min-speed value: "PERCENT" sets the floor of every fan, "FAN=PERCENT"
 * that of one fan; several may be given separated by commas.  0, or -1
 * with a message naming the bad part.
 */
int
pk_host_min_speed_parse(struct pk_host_limits *h, const char *value, char *err, size_t errlen)
{
	char	   *copy = strdup(value),
			   *part,
			   *save = NULL;
	int			rc = 0;

	if (!copy)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (part = strtok_r(copy, ",", &save); part && rc == 0; part = strtok_r(NULL, ",", &save))
	{
		char	   *eq,
				   *end,
				   *id = NULL;
		double		v;

		while (*part == ' ' || *part == '\t')
			part++;
		end = part + strlen(part);
		while (end > part && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if ((eq = strchr(part, '=')) != NULL)
		{
			id = part;
			*eq = '\0';
			part = eq + 1;
			for (end = eq; end > id && (end[-1] == ' ' || end[-1] == '\t');)
				*--end = '\0';
			while (*part == ' ' || *part == '\t')
				part++;
			if (!*id || strlen(id) > PK_ID_MAX)
			{
				snprintf(err, errlen, "\"%.80s\": fan ids are 1 to %d bytes", id, PK_ID_MAX);
				rc = -1;
				break;
			}
		}
		errno = 0;
		v = strtod(part, &end);
		if (errno || end == part || *end || !isfinite(v) || v < 0 || v > 100)
		{
			snprintf(err, errlen, "\"%.80s\" is not a percentage (0 to 100)", part);
			rc = -1;
			break;
		}
		if (!id)
			h->min_speed = v;
		else
		{
			int			i;
			struct pk_fan_floor *grown;

			for (i = 0; i < h->nfans && strcmp(h->fans[i].id, id) != 0; i++)
				;
			if (i == h->nfans)
			{
				grown = realloc(h->fans, sizeof(*grown) * (size_t) (h->nfans + 1));
				if (!grown)
				{
					snprintf(err, errlen, "out of memory");
					rc = -1;
					break;
				}
				h->fans = grown;
				snprintf(h->fans[i].id, sizeof(h->fans[i].id), "%s", id);
				h->nfans++;
			}
			h->fans[i].min_speed = v;
		}
	}
	free(copy);
	return rc;
}

void
pk_host_limits_free(struct pk_host_limits *h)
{
	free(h->fans);
	h->fans = NULL;
	h->nfans = 0;
}

/* The emergency temperature in force: the server may only lower the host's. */
double
pk_emergency_temp(struct pk_agent *a)
{
	if (a->host.emergency_temp > 0 && a->settings.emergency_temp > a->host.emergency_temp)
		return a->host.emergency_temp;
	return a->settings.emergency_temp;
}

/* The failsafe speed in force: the server may only raise the host's. */
double
pk_failsafe_speed(struct pk_agent *a)
{
	return a->settings.failsafe_speed > a->host.failsafe_speed ?
		a->settings.failsafe_speed : a->host.failsafe_speed;
}

/* A finite number, or a string holding one (be liberal in what we accept). */
static bool
get_number(const cJSON *item, double *out)
{
	char	   *end;
	double		v;

	if (cJSON_IsNumber(item))
		v = item->valuedouble;
	else if (cJSON_IsString(item) && item->valuestring[0])
	{
		v = strtod(item->valuestring, &end);
		if (*end)
			return false;
	}
	else
		return false;
	if (!isfinite(v))
		return false;
	*out = v;
	return true;
}

/* Fetch an optional number in [lo, hi]; -1 with a message when invalid. */
static int
opt_number(const cJSON *obj, const char *key, double lo, double hi, double *out, bool *present,
		   char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	*present = false;
	if (!item || cJSON_IsNull(item))
		return 0;
	if (!get_number(item, out))
	{
		snprintf(err, errlen, "%s: not a number", key);
		return -1;
	}
	if (*out < lo || *out > hi)
	{
		snprintf(err, errlen, "%s: %g is out of range (%g to %g)", key, *out, lo, hi);
		return -1;
	}
	*present = true;
	return 0;
}

/* Parse {"fan_id": {"min_speed": n, "max_speed": n}, ...}. */
static int
parse_fan_limits(const cJSON *fans, struct pk_fan_limit **out, int *nout, char *err, size_t errlen)
{
	const cJSON *f;
	int			n = 0;

	*out = NULL;
	*nout = 0;
	if (!cJSON_IsObject(fans))
	{
		snprintf(err, errlen, "fans: not an object");
		return -1;
	}
	*out = calloc((size_t) cJSON_GetArraySize(fans) + 1, sizeof(**out));
	if (!*out)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cJSON_ArrayForEach(f, fans)
	{
		char		e[200];
		double		lo = 0,
					hi = 100,
					emerg = 0;
		bool		has_lo,
					has_hi,
					has_emerg;

		if (!f->string || !f->string[0] || strlen(f->string) > PK_ID_MAX)
		{
			snprintf(err, errlen, "fans: fan ids are 1 to %d bytes", PK_ID_MAX);
			goto fail;
		}
		if (!cJSON_IsObject(f))
		{
			snprintf(err, errlen, "fans.%s: not an object", f->string);
			goto fail;
		}
		if (opt_number(f, "min_speed", 0, 100, &lo, &has_lo, e, sizeof(e)) != 0 ||
			opt_number(f, "max_speed", 0, 100, &hi, &has_hi, e, sizeof(e)) != 0 ||
			opt_number(f, "emergency_temp", 20, 250, &emerg, &has_emerg, e, sizeof(e)) != 0)
		{
			snprintf(err, errlen, "fans.%s.%s", f->string, e);
			goto fail;
		}
		if (lo > hi)
		{
			snprintf(err, errlen, "fans.%s: min_speed %g is above max_speed %g", f->string, lo, hi);
			goto fail;
		}
		snprintf((*out)[n].id, sizeof((*out)[n].id), "%s", f->string);
		(*out)[n].min_speed = lo;
		(*out)[n].max_speed = hi;
		(*out)[n].emergency_temp = has_emerg ? emerg : 0;
		n++;
	}
	*nout = n;
	return 0;
fail:
	free(*out);
	*out = NULL;
	return -1;
}

/*
 * Apply a settings object (config_update data or update_settings).  It is
 * checked whole first: on any invalid field nothing changes and err names
 * the field.  Unknown fields are ignored.
 */
int
pk_settings_apply(struct pk_agent *a, const cJSON *obj, char *err, size_t errlen)
{
	struct pk_settings s = a->settings;
	struct pk_fan_limit *limits = NULL;
	int			nlimits = 0;
	bool		present;
	const cJSON *item;

	if (!cJSON_IsObject(obj))
	{
		snprintf(err, errlen, "settings: not an object");
		return -1;
	}
	if (opt_number(obj, "update_interval", 0.5, 30, &s.update_interval, &present, err, errlen) ||
		opt_number(obj, "emergency_temp", 20, 150, &s.emergency_temp, &present, err, errlen) ||
		opt_number(obj, "failsafe_speed", 0, 100, &s.failsafe_speed, &present, err, errlen) ||
		opt_number(obj, "fan_step", 0, 100, &s.fan_step, &present, err, errlen) ||
		opt_number(obj, "hysteresis", 0, 50, &s.hysteresis, &present, err, errlen))
		return -1;
	item = cJSON_GetObjectItemCaseSensitive(obj, "log_level");
	if (item && !cJSON_IsNull(item))
	{
		int			lvl = cJSON_IsString(item) ? pk_log_level_parse(item->valuestring) : -1;

		if (lvl < 0)
		{
			snprintf(err, errlen, "log_level: must be one of error, warning, info, debug");
			return -1;
		}
		s.log_level = lvl;
	}
	item = cJSON_GetObjectItemCaseSensitive(obj, "enable_fan_control");
	if (item && !cJSON_IsNull(item))
	{
		if (!cJSON_IsBool(item))
		{
			snprintf(err, errlen, "enable_fan_control: not a boolean");
			return -1;
		}
		s.enable_fan_control = cJSON_IsTrue(item);
	}
	item = cJSON_GetObjectItemCaseSensitive(obj, "fans");
	if (!item)
		item = cJSON_GetObjectItemCaseSensitive(obj, "fan_limits");
	if (item && !cJSON_IsNull(item) &&
		parse_fan_limits(item, &limits, &nlimits, err, errlen) != 0)
		return -1;

	/* Everything is valid: apply. */
	if (s.update_interval != a->settings.update_interval)
		pk_log(PK_LOG_INFO, "update interval is now %g s", s.update_interval);
	if (a->host.emergency_temp > 0 && s.emergency_temp > a->host.emergency_temp &&
		s.emergency_temp != a->settings.emergency_temp)
		pk_log(PK_LOG_WARN, "emergency_temp %g C from the server is above this host's %g C "
			   "(emergency-temp): keeping %g C", s.emergency_temp, a->host.emergency_temp,
			   a->host.emergency_temp);
	if (s.failsafe_speed < a->host.failsafe_speed && s.failsafe_speed != a->settings.failsafe_speed)
		pk_log(PK_LOG_WARN, "failsafe_speed %g %% from the server is below this host's %g %% "
			   "(failsafe-speed): keeping %g %%", s.failsafe_speed, a->host.failsafe_speed,
			   a->host.failsafe_speed);
	if (a->settings.enable_fan_control && !s.enable_fan_control)
	{
		pk_log(PK_LOG_INFO, "fan control disabled by the server: fans go back to firmware");
		for (int i = 0; i < a->hw.nfans; i++)
		{
			a->hw.fans[i].mode = PK_FAN_AUTO;
			pk_profile_free(a->hw.fans[i].profile);
			a->hw.fans[i].profile = NULL;
		}
	}
	a->settings = s;
	pk_log_level = s.log_level;
	for (int i = 0; i < nlimits; i++)
	{
		char		e[64];

		pk_set_fan_limit(a, limits[i].id, limits[i].min_speed, limits[i].max_speed, e, sizeof(e));
		for (int j = 0; j < a->nlimits; j++)
			if (strcmp(a->limits[j].id, limits[i].id) == 0)
				a->limits[j].emergency_temp = limits[i].emergency_temp;
	}
	free(limits);
	control_apply(a, NULL, 0);
	return 0;
}

/* The fan's floor on this host alone: its own min-speed, else the default. */
static double
host_min(struct pk_agent *a, const char *fan_id)
{
	for (int i = 0; i < a->host.nfans; i++)
		if (strcmp(a->host.fans[i].id, fan_id) == 0)
			return a->host.fans[i].min_speed;
	return a->host.min_speed;
}

/*
 * The fan's minimum speed in percent: the server's limit where it is
 * higher than the host's floor, else the host's floor.
 */
double
pk_fan_min(struct pk_agent *a, const char *fan_id)
{
	double		lo = host_min(a, fan_id);

	for (int i = 0; i < a->nlimits; i++)
		if (strcmp(a->limits[i].id, fan_id) == 0 && a->limits[i].min_speed > lo)
			return a->limits[i].min_speed;
	return lo;
}

/* The fan's maximum speed in percent (100 when none), never below its minimum. */
double
pk_fan_max(struct pk_agent *a, const char *fan_id)
{
	double		lo = pk_fan_min(a, fan_id);

	for (int i = 0; i < a->nlimits; i++)
		if (strcmp(a->limits[i].id, fan_id) == 0)
			return a->limits[i].max_speed > lo ? a->limits[i].max_speed : lo;
	return 100;
}

/* The fan's own emergency temperature (0 when it has none). */
double
pk_fan_emergency(struct pk_agent *a, const char *fan_id)
{
	for (int i = 0; i < a->nlimits; i++)
		if (strcmp(a->limits[i].id, fan_id) == 0)
			return a->limits[i].emergency_temp;
	return 0;
}

/* Record safety limits for a fan (it need not exist yet). */
int
pk_set_fan_limit(struct pk_agent *a, const char *fan_id, double min_speed, double max_speed,
				 char *err, size_t errlen)
{
	struct pk_fan_limit *grown;

	if (!(min_speed >= 0 && max_speed <= 100 && min_speed <= max_speed))
	{
		snprintf(err, errlen, "min_speed %g and max_speed %g must satisfy 0 <= min <= max <= 100",
				 min_speed, max_speed);
		return -1;
	}
	for (int i = 0; i < a->nlimits; i++)
		if (strcmp(a->limits[i].id, fan_id) == 0)
		{
			a->limits[i].min_speed = min_speed;
			a->limits[i].max_speed = max_speed;
			return 0;
		}
	grown = realloc(a->limits, sizeof(*grown) * (size_t) (a->nlimits + 1));
	if (!grown)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->limits = grown;
	snprintf(a->limits[a->nlimits].id, sizeof(a->limits[a->nlimits].id), "%s", fan_id);
	a->limits[a->nlimits].min_speed = min_speed;
	a->limits[a->nlimits].max_speed = max_speed;
	a->limits[a->nlimits].emergency_temp = 0;
	a->nlimits++;
	return 0;
}

/* Log and report a failed sysfs write; returns -1. */
static int
write_failed(struct pk_fan *f, const char *path, char *err, size_t errlen)
{
	int			e = errno;

	pk_log(PK_LOG_ERROR, "fan %s: cannot write %s: %s", f->id, path, strerror(e));
	if (err)
		snprintf(err, errlen, "fan %s: cannot write %s: %s", f->id, path, strerror(e));
	f->status = "error";
	return -1;
}

/*
 * Write one fan: pwm_enable to manual and pwm to want percent.  Notices a
 * value changed by someone else since our last write and writes it again.
 */
static int
drive_fan(struct pk_agent *a, struct pk_fan *f, double want, const char *status,
		  char *err, size_t errlen)
{
	long		pwm = pk_round(want * 255.0 / 100.0);
	long		enable = -1;
	bool		was_driving = f->written_pwm >= 0;
	bool		overridden = false;

	if (!f->touched)
	{
		/* Recorded before the first write, where a restart finds it. */
		f->orig_enable = pk_fanmodes_original(a, f);
		f->touched = true;
	}
	if (f->enable_path && pk_read_long(f->enable_path, &enable) != 0)
		enable = -1;
	if (f->enable_path && enable != 1)
	{
		if (was_driving)
			overridden = true;
		if (pk_write_long(f->enable_path, 1) != 0)
			return write_failed(f, f->enable_path, err, errlen);
	}
	if (was_driving && pwm == f->written_pwm && f->pwm >= 0 &&
		labs(f->pwm - f->written_pwm) > PWM_TOLERANCE)
		overridden = true;
	if (overridden)
	{
		f->reasserts++;
		a->reasserts++;
		pk_log(PK_LOG_WARN, "fan %s: pwm was changed by another writer (pwm %ld, enable %ld); "
			   "setting it back to %ld", f->id, f->pwm, enable, pwm);
	}
	if (pwm != f->written_pwm || overridden || f->pwm < 0 || labs(f->pwm - pwm) > PWM_TOLERANCE)
	{
		if (pk_write_long(f->pwm_path, pwm) != 0)
			return write_failed(f, f->pwm_path, err, errlen);
		f->written_pwm = pwm;
		f->pwm = pwm;
	}
	f->target = want;
	f->output = want;
	f->status = overridden ? "reasserted" : status;
	return 0;
}

/* Give a fan back to firmware (pwm_enable automatic). */
static void
release_fan(struct pk_agent *a, struct pk_fan *f)
{
	if (f->written_pwm >= 0 && f->enable_path)
	{
		long		mode = f->orig_enable >= 2 ? f->orig_enable : 2;

		if (pk_write_long(f->enable_path, mode) != 0)
			pk_log(PK_LOG_ERROR, "fan %s: cannot give it back to firmware: %s",
				   f->id, strerror(errno));
	}
	f->written_pwm = -1;
	f->target = -1;
	f->output = -1;
	f->status = "auto";
	(void) a;
}

/* Linear interpolation on the curve, flat beyond its ends. */
double
pk_profile_eval(const struct pk_profile *p, double temp)
{
	if (temp <= p->temps[0])
		return p->speeds[0];
	for (int i = 1; i < p->npoints; i++)
		if (temp <= p->temps[i])
		{
			double		t0 = p->temps[i - 1],
						t1 = p->temps[i];

			return p->speeds[i - 1] + (p->speeds[i] - p->speeds[i - 1]) * (temp - t0) / (t1 - t0);
		}
	return p->speeds[p->npoints - 1];
}

/*
 * One profile tick: follow the curve upwards at once, downwards only after
 * the temperature fell by the hysteresis, and move the output at most one
 * step per tick.
 */
static double
profile_step(struct pk_agent *a, struct pk_fan *f)
{
	struct pk_profile *p = f->profile;
	struct pk_sensor *s = pk_hw_sensor(&a->hw, p->sensor_id);
	double		temp = -INFINITY,
				curve,
				out;

	if (s && s->valid)
		temp = s->temp;
	else
	{
		/* The sensor is gone or unreadable: follow the hottest one. */
		for (int i = 0; i < a->hw.nsensors; i++)
			if (a->hw.sensors[i].valid && a->hw.sensors[i].temp > temp)
				temp = a->hw.sensors[i].temp;
		if (temp == -INFINITY)
			return p->speeds[p->npoints - 1];
	}
	curve = pk_profile_eval(p, temp);
	if (!p->have_last || curve > p->target ||
		(curve < p->target && temp <= p->last_temp - p->hysteresis))
	{
		p->target = curve;
		p->last_temp = temp;
		p->have_last = true;
	}
	out = f->output >= 0 ? f->output : (f->pwm >= 0 ? f->pwm * 100.0 / 255.0 : p->target);
	if (p->step > 0 && fabs(p->target - out) > p->step)
		out += p->target > out ? p->step : -p->step;
	else
		out = p->target;
	return out;
}

/* Drive every fan by the rules at the top of this file. */
static int
control_apply(struct pk_agent *a, char *err, size_t errlen)
{
	int			rc = 0;

	for (int i = 0; i < a->hw.nfans; i++)
	{
		struct pk_fan *f = &a->hw.fans[i];
		double		lo = pk_fan_min(a, f->id),
					hi = pk_fan_max(a, f->id),
					own = pk_fan_emergency(a, f->id);
		double		want;
		const char *status = "ok";

		if (!f->pwm_path)
		{
			f->status = "ok";	/* read-only fan */
			continue;
		}
		if (a->emergency || a->emergency_stop || (own > 0 && a->hottest >= own))
		{
			if (drive_fan(a, f, 100, a->emergency_stop && !a->emergency ? "emergency_stop" : "emergency",
						  err, errlen) != 0)
				rc = -1;
			continue;
		}
		if (f->mode == PK_FAN_AUTO || !a->settings.enable_fan_control)
		{
			if (f->written_pwm >= 0)
				release_fan(a, f);
			continue;
		}
		want = f->mode == PK_FAN_MANUAL ? f->manual_speed : f->output;
		if (f->mode == PK_FAN_PROFILE && want < 0)
			want = f->profile ? f->profile->speeds[f->profile->npoints - 1] : 100;
		if (a->failsafe && want < pk_failsafe_speed(a))
		{
			want = pk_failsafe_speed(a);
			status = "failsafe";
		}
		if (want < lo)
			want = lo;
		if (want > hi)
			want = hi;
		if (drive_fan(a, f, want, status, err, errlen) != 0)
			rc = -1;
	}
	return rc;
}

/*
 * One control tick: read the hardware, decide emergency and failsafe, run
 * profiles and drive the fans.  server_lost says the server has been
 * unreachable for longer than the grace.
 */
void
pk_control_tick(struct pk_agent *a, bool server_lost)
{
	bool		was_emergency = a->emergency;
	struct pk_sensor *hot = NULL;
	double		emergency_temp = pk_emergency_temp(a);

	if (pk_hw_changed(&a->hw))
		pk_hw_scan(&a->hw);
	pk_hw_read(&a->hw);
	a->emergency = false;
	a->hottest = -1000;
	for (int i = 0; i < a->hw.nsensors; i++)
	{
		struct pk_sensor *s = &a->hw.sensors[i];

		if (s->valid && s->temp > a->hottest)
			a->hottest = s->temp;
		if (s->valid && (s->temp >= emergency_temp ||
						 (s->has_crit && s->crit_temp > 0 && s->temp >= s->crit_temp)))
		{
			a->emergency = true;
			if (!hot || s->temp > hot->temp)
				hot = s;
		}
	}
	if (a->emergency && !was_emergency)
		pk_log(PK_LOG_WARN, "sensor %s at %.1f C (emergency %.1f C, crit %.1f C): all fans to 100 %%",
			   hot->id, hot->temp, emergency_temp, hot->has_crit ? hot->crit_temp : 0);
	else if (!a->emergency && was_emergency)
		pk_log(PK_LOG_INFO, "temperatures are below the emergency limit again");
	if (server_lost != a->failsafe)
		pk_log(server_lost ? PK_LOG_WARN : PK_LOG_INFO, server_lost ?
			   "server lost beyond the grace period: fans driven by the agent get the failsafe speed" :
			   "server reachable again: failsafe over");
	a->failsafe = server_lost;
	for (int i = 0; i < a->hw.nfans; i++)
	{
		struct pk_fan *f = &a->hw.fans[i];

		if (f->mode == PK_FAN_PROFILE && f->profile)
			f->output = profile_step(a, f);
	}
	control_apply(a, NULL, 0);
}

/* Parse apply_profile parameters into a fresh profile. */
static int
parse_profile(struct pk_agent *a, const cJSON *params, struct pk_profile **out,
			  char *err, size_t errlen)
{
	const cJSON *prof = cJSON_GetObjectItemCaseSensitive(params, "profile");
	const cJSON *points,
			   *pt,
			   *sid,
			   *name;
	struct pk_profile *p;
	int			n = 0;
	bool		present;

	if (!prof)
		prof = params;			/* the curve given flat in parameters */
	if (!cJSON_IsObject(prof))
	{
		snprintf(err, errlen, "profile: not an object");
		return -1;
	}
	points = cJSON_GetObjectItemCaseSensitive(prof, "points");
	if (!points)
		points = cJSON_GetObjectItemCaseSensitive(prof, "curve");
	if (!cJSON_IsArray(points) || cJSON_GetArraySize(points) < 1 ||
		cJSON_GetArraySize(points) > MAX_PROFILE_POINTS)
	{
		snprintf(err, errlen, "profile.points: must be an array of 1 to %d points", MAX_PROFILE_POINTS);
		return -1;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->temps = calloc((size_t) cJSON_GetArraySize(points), sizeof(double))) ||
		!(p->speeds = calloc((size_t) cJSON_GetArraySize(points), sizeof(double))))
	{
		pk_profile_free(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cJSON_ArrayForEach(pt, points)
	{
		double		t,
					s;
		bool		ok;

		if (cJSON_IsArray(pt))
			ok = cJSON_GetArraySize(pt) == 2 && get_number(cJSON_GetArrayItem(pt, 0), &t) &&
				get_number(cJSON_GetArrayItem(pt, 1), &s);
		else
			ok = cJSON_IsObject(pt) &&
				(get_number(cJSON_GetObjectItemCaseSensitive(pt, "temperature"), &t) ||
				 get_number(cJSON_GetObjectItemCaseSensitive(pt, "temp"), &t)) &&
				get_number(cJSON_GetObjectItemCaseSensitive(pt, "speed"), &s);
		if (!ok)
		{
			snprintf(err, errlen, "profile.points[%d]: must be [temperature, speed] or "
					 "{\"temperature\": t, \"speed\": s}", n);
			pk_profile_free(p);
			return -1;
		}
		if (t < -50 || t > 200 || s < 0 || s > 100)
		{
			snprintf(err, errlen, "profile.points[%d]: temperature must be -50..200 and speed 0..100", n);
			pk_profile_free(p);
			return -1;
		}
		if (n > 0 && t <= p->temps[n - 1])
		{
			snprintf(err, errlen, "profile.points[%d]: temperatures must increase", n);
			pk_profile_free(p);
			return -1;
		}
		p->temps[n] = t;
		p->speeds[n] = s;
		n++;
	}
	p->npoints = n;
	p->hysteresis = a->settings.hysteresis;
	p->step = a->settings.fan_step;
	if (opt_number(prof, "hysteresis", 0, 50, &p->hysteresis, &present, err, errlen) != 0 ||
		opt_number(prof, "step", 0, 100, &p->step, &present, err, errlen) != 0)
	{
		char		e[160];

		snprintf(e, sizeof(e), "%s", err);
		snprintf(err, errlen, "profile.%s", e);
		pk_profile_free(p);
		return -1;
	}
	sid = cJSON_GetObjectItemCaseSensitive(params, "sensor_id");
	if (!sid)
		sid = cJSON_GetObjectItemCaseSensitive(prof, "sensor_id");
	if (!cJSON_IsString(sid) || !pk_hw_sensor(&a->hw, sid->valuestring))
	{
		snprintf(err, errlen, "sensor_id: %s%s%s", cJSON_IsString(sid) ? "no sensor \"" : "missing",
				 cJSON_IsString(sid) ? sid->valuestring : "", cJSON_IsString(sid) ? "\" on this host" : "");
		pk_profile_free(p);
		return -1;
	}
	snprintf(p->sensor_id, sizeof(p->sensor_id), "%s", sid->valuestring);
	name = cJSON_GetObjectItemCaseSensitive(prof, "name");
	p->name = strdup(cJSON_IsString(name) ? name->valuestring : "unnamed");
	if (!p->name)
	{
		pk_profile_free(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*out = p;
	return 0;
}

/* Find the controllable fan named by params.fan_id. */
static struct pk_fan *
command_fan(struct pk_agent *a, const cJSON *params, char *err, size_t errlen)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(params, "fan_id");
	struct pk_fan *f;

	if (!cJSON_IsString(id))
	{
		snprintf(err, errlen, "fan_id: %s", id ? "not a string" : "missing");
		return NULL;
	}
	f = pk_hw_fan(&a->hw, id->valuestring);
	if (!f)
	{
		snprintf(err, errlen, "fan_id: no fan \"%.64s\" on this host", id->valuestring);
		return NULL;
	}
	if (!f->pwm_path)
	{
		snprintf(err, errlen, "fan_id: fan \"%s\" has no pwm control", f->id);
		return NULL;
	}
	return f;
}

/*
 * Limits given in command parameters.  apply_profile carries the fan's
 * catalog limits (pankha.set_fan_limits, by an admin) and keeps them like
 * config_update's "fans"; set_fan_speed's only narrow that one command
 * (*lo, *hi) and are never kept.  Neither can take the floor below the
 * host's own (pk_fan_min).
 */
static int
command_limits(struct pk_agent *a, const char *fan_id, const cJSON *params, bool keep,
			   double *lo_out, double *hi_out, char *err, size_t errlen)
{
	double		lo = 0,
				hi = 100;
	bool		has_lo,
				has_hi;

	if (opt_number(params, "min_speed", 0, 100, &lo, &has_lo, err, errlen) != 0 ||
		opt_number(params, "max_speed", 0, 100, &hi, &has_hi, err, errlen) != 0)
		return -1;
	if (has_lo && has_hi && lo > hi)
	{
		snprintf(err, errlen, "min_speed %g is above max_speed %g", lo, hi);
		return -1;
	}
	if (keep && (has_lo || has_hi))
	{
		double		cur_lo = 0,
					cur_hi = 100;

		for (int i = 0; i < a->nlimits; i++)
			if (strcmp(a->limits[i].id, fan_id) == 0)
			{
				cur_lo = a->limits[i].min_speed;
				cur_hi = a->limits[i].max_speed;
			}
		if (!has_lo)
			lo = cur_lo < hi ? cur_lo : hi;
		if (!has_hi)
			hi = cur_hi > lo ? cur_hi : lo;
		if (pk_set_fan_limit(a, fan_id, lo, hi, err, errlen) != 0)
			return -1;
	}
	*lo_out = pk_fan_min(a, fan_id);
	*hi_out = pk_fan_max(a, fan_id);
	if (!keep && has_lo && lo > *lo_out)
		*lo_out = lo;
	if (!keep && has_hi && hi < *hi_out)
		*hi_out = hi > *lo_out ? hi : *lo_out;
	return 0;
}

/*
 * Execute one command.  Returns 0, or -1 with a message in err; a command
 * that fails validation changes nothing.
 */
int
pk_command_execute(struct pk_agent *a, const char *type, const cJSON *params,
				   char *err, size_t errlen)
{
	struct pk_fan *f;

	if (params && !cJSON_IsObject(params))
	{
		snprintf(err, errlen, "parameters: not an object");
		return -1;
	}
	if (strcmp(type, "set_fan_speed") == 0)
	{
		double		speed,
					lo,
					hi;
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(params, "speed");

		if (!a->settings.enable_fan_control)
		{
			snprintf(err, errlen, "fan control is disabled on this agent (enable_fan_control)");
			return -1;
		}
		if (!(f = command_fan(a, params, err, errlen)))
			return -1;
		if (!get_number(sp, &speed))
		{
			snprintf(err, errlen, "speed: %s", sp ? "not a number" : "missing");
			return -1;
		}
		if (speed < 0 || speed > 100)
		{
			snprintf(err, errlen, "speed: %g is out of range (0 to 100)", speed);
			return -1;
		}
		if (command_limits(a, f->id, params, false, &lo, &hi, err, errlen) != 0)
			return -1;
		if (speed < lo)
		{
			snprintf(err, errlen, "speed: %g %% is below the minimum of fan %s (%g %%)", speed, f->id, lo);
			return -1;
		}
		if (speed > hi)
		{
			snprintf(err, errlen, "speed: %g %% is above the maximum of fan %s (%g %%)", speed, f->id, hi);
			return -1;
		}
		f->mode = PK_FAN_MANUAL;
		f->manual_speed = speed;
		pk_profile_free(f->profile);
		f->profile = NULL;
		return control_apply(a, err, errlen);
	}
	if (strcmp(type, "apply_profile") == 0)
	{
		struct pk_profile *p;
		double		lo,
					hi;

		if (!a->settings.enable_fan_control)
		{
			snprintf(err, errlen, "fan control is disabled on this agent (enable_fan_control)");
			return -1;
		}
		if (!(f = command_fan(a, params, err, errlen)))
			return -1;
		if (parse_profile(a, params, &p, err, errlen) != 0)
			return -1;
		/* Checked whole first: a command that fails changes nothing. */
		if (command_limits(a, f->id, params, true, &lo, &hi, err, errlen) != 0)
		{
			pk_profile_free(p);
			return -1;
		}
		pk_profile_free(f->profile);
		f->profile = p;
		f->mode = PK_FAN_PROFILE;
		f->output = profile_step(a, f);
		pk_log(PK_LOG_INFO, "fan %s follows profile \"%s\" on sensor %s", f->id, p->name, p->sensor_id);
		return control_apply(a, err, errlen);
	}
	if (strcmp(type, "update_settings") == 0)
	{
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(params, "settings");

		return pk_settings_apply(a, s ? s : params, err, errlen);
	}
	if (strcmp(type, "emergency_stop") == 0)
	{
		a->emergency_stop = true;
		pk_log(PK_LOG_WARN, "emergency stop: all fans to 100 %% until restore_auto");
		return control_apply(a, err, errlen);
	}
	if (strcmp(type, "restore_auto") == 0)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(params, "fan_id");

		if (id && !cJSON_IsNull(id))
		{
			if (!(f = command_fan(a, params, err, errlen)))
				return -1;
			f->mode = PK_FAN_AUTO;
			pk_profile_free(f->profile);
			f->profile = NULL;
		}
		else
		{
			a->emergency_stop = false;
			for (int i = 0; i < a->hw.nfans; i++)
			{
				a->hw.fans[i].mode = PK_FAN_AUTO;
				pk_profile_free(a->hw.fans[i].profile);
				a->hw.fans[i].profile = NULL;
			}
		}
		return control_apply(a, err, errlen);
	}
	snprintf(err, errlen, "command_type: unknown command \"%.64s\"", type);
	return -1;
}

static struct pk_recent_cmd *
recent_find(struct pk_agent *a, const char *id)
{
	for (int i = 0; i < PK_RECENT_CMDS; i++)
		if (a->recent[i].id && strcmp(a->recent[i].id, id) == 0)
			return &a->recent[i];
	return NULL;
}

/* Remember a command's result, evicting the oldest entry. */
static void
recent_add(struct pk_agent *a, const char *id, bool success, const char *error)
{
	struct pk_recent_cmd *r = &a->recent[a->recent_next];

	free(r->id);
	free(r->error);
	r->id = strdup(id);
	r->success = success;
	r->error = error ? strdup(error) : NULL;
	a->recent_next = (a->recent_next + 1) % PK_RECENT_CMDS;
}

void
pk_recent_free(struct pk_agent *a)
{
	for (int i = 0; i < PK_RECENT_CMDS; i++)
	{
		free(a->recent[i].id);
		free(a->recent[i].error);
		a->recent[i].id = a->recent[i].error = NULL;
	}
}

static char *
iso_now(char *buf, size_t len)
{
	int64_t		ms = pk_now_ms();
	time_t		secs = (time_t) (ms / 1000);
	struct tm	tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
	return buf;
}

/*
 * Handle a command's data object and return the command_ack data to send
 * (NULL when there is no usable command_id to answer, or out of memory).
 * A command id seen recently is answered with its earlier result and not
 * run again.
 */
cJSON *
pk_command_handle(struct pk_agent *a, const cJSON *data)
{
	const cJSON *idj = cJSON_GetObjectItemCaseSensitive(data, "command_id");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(data, "command_type");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(data, "parameters");
	char		idbuf[32],
				err[256] = "",
				ts[64];
	const char *id;
	struct pk_recent_cmd *seen;
	bool		success;
	const char *error;
	cJSON	   *ack;

	if (cJSON_IsString(idj) && idj->valuestring[0])
		id = idj->valuestring;
	else if (cJSON_IsNumber(idj))
	{
		snprintf(idbuf, sizeof(idbuf), "%.0f", idj->valuedouble);
		id = idbuf;
	}
	else
	{
		pk_log(PK_LOG_WARN, "command without a command_id ignored");
		return NULL;
	}
	seen = recent_find(a, id);
	if (seen)
	{
		pk_log(PK_LOG_INFO, "command %s was already executed; acknowledging it again", id);
		success = seen->success;
		error = seen->error;
	}
	else
	{
		if (!cJSON_IsString(type))
		{
			snprintf(err, sizeof(err), "command_type: %s", type ? "not a string" : "missing");
			success = false;
		}
		else
		{
			success = pk_command_execute(a, type->valuestring, cJSON_IsNull(params) ? NULL : params,
										 err, sizeof(err)) == 0;
			pk_log(success ? PK_LOG_INFO : PK_LOG_WARN, "command %s (%s): %s", id,
				   type->valuestring, success ? "done" : err);
		}
		error = success ? NULL : err;
		recent_add(a, id, success, error);
	}
	ack = cJSON_CreateObject();
	if (!ack)
		return NULL;
	if (!cJSON_AddStringToObject(ack, "command_id", id) ||
		!cJSON_AddBoolToObject(ack, "success", success) ||
		!(error ? cJSON_AddStringToObject(ack, "error", error) : cJSON_AddNullToObject(ack, "error")) ||
		!cJSON_AddStringToObject(ack, "timestamp", iso_now(ts, sizeof(ts))))
	{
		cJSON_Delete(ack);
		return NULL;
	}
	return ack;
}

/*
 * On exit: give every fan we touched its original pwm_enable back (firmware
 * mode when the original is unknown); where that fails, leave it at full
 * speed.  Then drop the records of the fans given back (fanmodes.c).
 */
void
pk_control_restore(struct pk_agent *a)
{
	bool	   *restored = calloc((size_t) a->nfanmodes + 1, sizeof(bool));

	for (int i = 0; i < a->hw.nfans; i++)
	{
		struct pk_fan *f = &a->hw.fans[i];
		long		mode = f->orig_enable >= 0 ? f->orig_enable : 2;
		bool		ok = true;

		if (f->touched && f->pwm_path)
		{
			ok = f->enable_path && pk_write_long(f->enable_path, mode) == 0;
			if (ok)
				pk_log(PK_LOG_INFO, "fan %s: pwm_enable restored to %ld", f->id, mode);
			else
			{
				pk_log(PK_LOG_WARN, "fan %s: cannot restore pwm_enable; leaving it at full speed", f->id);
				pk_write_long(f->pwm_path, 255);
			}
		}
		for (int j = 0; restored && j < a->nfanmodes; j++)
			if (strcmp(a->fanmodes[j].id, f->id) == 0)
				restored[j] = ok;
	}
	if (restored && a->nfanmodes > 0)
		pk_fanmodes_done(a, restored);
	free(restored);
}
