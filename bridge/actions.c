/*
 * actions.c - roles, and the one validator of each dashboard action,
 * shared by the HTTP routes (http_api.c) and the /ws/ui messages
 * (ui_ws.c).
 *
 * A validator reads the action's fields from a JSON object and fills in
 * the arguments of the extension's function, or names the first field
 * that is wrong.  prefix is how the client names the object ("" for an
 * HTTP body, "data." for a WebSocket message), so that the message says
 * "data.ttl_seconds: ..." or "ttl_seconds: ..." as the client wrote it.
 * Limits are the extension's (extension/sql/30_commands.sql and
 * 35_settings.sql); values the extension checks itself (priority names,
 * command types, setting keys and values, scopes) are left to it, and
 * its message is what the client gets back.
 */
#include "actions.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const role_names[] = {"viewer", "operator", "admin"};

/* The name of a dashboard role ("viewer", ...); "" for the others. */
const char *
role_name(enum role r)
{
	return r >= ROLE_VIEWER && r <= ROLE_ADMIN ? role_names[r] : "";
}

/* Does a dashboard token's role (viewer < operator < admin) meet need? */
bool
role_allows(const char *have, enum role need)
{
	int			rank = -1;

	if (need < ROLE_VIEWER)
		return true;
	for (int i = ROLE_VIEWER; i <= ROLE_ADMIN; i++)
		if (have && !strcmp(have, role_names[i]))
			rank = i;
	return rank >= (int) need;
}

/* The status of an API error by SQLSTATE (docs/api-functions.md, "Errors"). */
int
api_error_status(const char *state, bool is_data)
{
	static const struct
	{
		const char *state;
		int			status;
	}			map[] = {
		{"42501", 403}, {"42704", 404}, {"P0002", 404}, {"02000", 404},
		{"23505", 409}, {"42710", 409}, {"23503", 409},
		{"22003", 422}, {"54000", 413}, {"57014", 503},
	};

	if (!state)
		return 503;				/* no answer from the server at all */
	if (!strncmp(state, "28", 2))
		return 401;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(state, map[i].state))
			return map[i].status;
	if (!strncmp(state, "08", 2) || !strncmp(state, "57", 2) || !strncmp(state, "53", 2))
		return 503;
	return is_data ? 400 : 500;
}

const char *
api_error_code(int status)
{
	switch (status)
	{
		case 400:
			return "invalid_input";
		case 401:
			return "unauthenticated";
		case 403:
			return "forbidden";
		case 404:
			return "not_found";
		case 405:
			return "method_not_allowed";
		case 409:
			return "conflict";
		case 413:
			return "too_large";
		case 422:
			return "out_of_range";
		case 429:
			return "rate_limited";
		case 503:
			return "unavailable";
		default:
			return "internal_error";
	}
}

static int
refuse(struct action_error *err, const char *prefix, const char *field, const char *fmt,...)
{
	va_list		ap;
	int			n = snprintf(err->message, sizeof(err->message), "%s%s: ", prefix, field);

	va_start(ap, fmt);
	if (n >= 0 && (size_t) n < sizeof(err->message))
		vsnprintf(err->message + n, sizeof(err->message) - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* A string member, or NULL when absent; *bad when present but not a string. */
static const char *
opt_string(cJSON *obj, const char *name, bool *bad)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	*bad = v && !cJSON_IsString(v);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/*
 * A command: {"agent_id" (unless given), "command_type", "parameters"
 * (object, default {}), "priority" (default "normal"), "ttl_seconds"
 * (default 300, a number of seconds above 0 and at most the extension's
 * 1 year)}.  0, or -1 with *err naming the field.
 */
int
action_check_command(cJSON *obj, const char *prefix, const char *agent_id,
					 struct command_args *out, struct action_error *err)
{
	cJSON	   *params = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
	cJSON	   *ttl = cJSON_GetObjectItemCaseSensitive(obj, "ttl_seconds");
	bool		bad;
	double		seconds = COMMAND_TTL_DEFAULT_S;

	memset(out, 0, sizeof(*out));
	if (!agent_id && !(agent_id = opt_string(obj, "agent_id", &bad)))
		return refuse(err, prefix, "agent_id", "missing or not a string");
	out->agent_id = agent_id;
	if (!(out->command_type = opt_string(obj, "command_type", &bad)))
		return refuse(err, prefix, "command_type", "missing or not a string");
	if (params && !cJSON_IsObject(params))
		return refuse(err, prefix, "parameters", "not an object");
	out->priority = opt_string(obj, "priority", &bad);
	if (bad)
		return refuse(err, prefix, "priority", "not a string");
	if (!out->priority)
		out->priority = "normal";
	if (ttl)
	{
		/* checked as a double: no conversion to int happens before the range is known */
		if (!cJSON_IsNumber(ttl) || !isfinite(ttl->valuedouble) ||
			!(ttl->valuedouble > 0) || ttl->valuedouble > COMMAND_TTL_MAX_S)
			return refuse(err, prefix, "ttl_seconds",
						  "not a number of seconds above 0 and at most %.0f (1 year)",
						  COMMAND_TTL_MAX_S);
		seconds = ttl->valuedouble;
	}
	snprintf(out->ttl, sizeof(out->ttl), "%.6f seconds", seconds);
	out->parameters = params ? cJSON_PrintUnformatted(params) : strdup("{}");
	if (!out->parameters)
	{
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -1;
	}
	return 0;
}

void
command_args_free(struct command_args *a)
{
	free(a->parameters);
	a->parameters = NULL;
}

/*
 * A setting: {"scope" ("global", "group:<name>" or "agent:<id>"), "key",
 * "value" (any JSON)}.  0, or -1 with *err naming the field.
 */
int
action_check_setting(cJSON *obj, const char *prefix, struct setting_args *out,
					 struct action_error *err)
{
	cJSON	   *value = cJSON_GetObjectItemCaseSensitive(obj, "value");
	bool		bad;

	memset(out, 0, sizeof(*out));
	if (!(out->scope = opt_string(obj, "scope", &bad)))
		return refuse(err, prefix, "scope",
					  "missing or not a string (global, group:<name> or agent:<id>)");
	if (!(out->key = opt_string(obj, "key", &bad)))
		return refuse(err, prefix, "key", "missing or not a string");
	if (!value)
		return refuse(err, prefix, "value", "missing");
	if (!(out->value = cJSON_PrintUnformatted(value)))
	{
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -1;
	}
	return 0;
}

void
setting_args_free(struct setting_args *a)
{
	free(a->value);
	a->value = NULL;
}
