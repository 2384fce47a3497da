/*
 * actions.h - what a dashboard may ask of the bridge, checked once for
 * both the HTTP API and /ws/ui (actions.c): the roles, and one validator
 * per action that turns the client's JSON into the arguments of the
 * extension's function.
 *
 * The extension stays the authority: a validator checks only the shape
 * of what it is given (types, presence) and the conversions the bridge
 * itself makes (a number of seconds into an interval), with the limits
 * the extension's SQL has, so that no value reaches C arithmetic out of
 * range; everything it passes is checked again by the SQL function.
 */
#ifndef PANKHA_ACTIONS_H
#define PANKHA_ACTIONS_H

#include "server.h"

/* Who may do what; each level may do everything of those before it. */
enum role
{
	ROLE_PUBLIC = -2,			/* anyone (probes) */
	ROLE_AGENT = -1,			/* agents: the route checks their key or token itself */
	ROLE_VIEWER = 0,			/* dashboard tokens, by role */
	ROLE_OPERATOR = 1,
	ROLE_ADMIN = 2
};

const char *role_name(enum role r);

/*
 * An error of the extension's API functions: its HTTP status (the table
 * of docs/api-functions.md; is_data for the other client errors) and the
 * word for that status that error bodies and frames carry as "code".
 */
int			api_error_status(const char *sqlstate, bool is_data);
const char *api_error_code(int status);
bool		role_allows(const char *have, enum role need);

/* Why a validator refused: a message naming the field (as the client spelled it). */
struct action_error
{
	char		message[256];
};

/* pankha.send_command($agent_id, $command_type, $parameters, $priority, $ttl, ui_user) */
struct command_args
{
	const char *agent_id;		/* borrowed from the request */
	const char *command_type;
	char	   *parameters;		/* JSON text (owned) */
	const char *priority;
	char		ttl[48];		/* interval text */
};

/* pankha.set_setting($scope, $key, $value, ui_user) */
struct setting_args
{
	const char *scope;			/* borrowed from the request */
	const char *key;
	char	   *value;			/* JSON text (owned) */
};

/* The most seconds a command may live: the extension's interval '1 year' (360 days). */
#define COMMAND_TTL_MAX_S 31104000.0
#define COMMAND_TTL_DEFAULT_S 300

int			action_check_command(cJSON *obj, const char *prefix, const char *agent_id,
								 struct command_args *out, struct action_error *err);
void		command_args_free(struct command_args *a);
int			action_check_setting(cJSON *obj, const char *prefix,
								 struct setting_args *out, struct action_error *err);
void		setting_args_free(struct setting_args *a);

#endif							/* PANKHA_ACTIONS_H */
