/*
 * http_api.h - the HTTP side (http_api.c): requests, dispatched through a
 * table of routes (http_routes.c), and what a route handler may call.
 *
 * A route is a row: method, path pattern, the least role it needs, and
 * its handler.  "{name}" in a pattern matches one path segment, read back
 * with http_arg().  The handler runs once the body is complete, inflated,
 * parsed (the body of a POST, PUT or PATCH must be a JSON object) and, for dashboard roles,
 * once the token has been checked and its role found sufficient; it
 * answers with http_respond*() or http_run_json(), now or from a query.
 */
#ifndef PANKHA_HTTP_API_H
#define PANKHA_HTTP_API_H

#include "actions.h"
#include "db.h"

struct http_req;

/* One route of the HTTP API. */
struct http_route
{
	const char *method;			/* "GET", "POST", "PUT", "PATCH" or "DELETE" */
	const char *pattern;		/* "/api/v1/agents/{id}/latest" */
	enum role	min_role;		/* ROLE_PUBLIC, ROLE_AGENT, or a dashboard role */
	void		(*handle) (struct http_req *r, cJSON *body);	/* body: NULL for GET, DELETE */
	/* routes served by http_call_api (API_ROUTE): */
	const char *function;		/* "api_fleet" */
	const char *sql;			/* its call, $1 ui_user, $2 ui_role, $3 args */
	const char *fixed;			/* JSON object merged into the args last, or NULL */
};

/*
 * A route that is one call of an extension function (docs/api-functions.md):
 * the args object merges the body, the query string, the path's {params}
 * and fixed, in that order (later wins).
 */
#define API_ROUTE(method, pattern, role, fn, fixed) \
	{method, pattern, role, http_call_api, fn, \
	 "SELECT pankha." fn "($1, $2, $3::jsonb)::text", fixed}

void		http_call_api(struct http_req *r, cJSON *body);

void		http_init(const struct http_route *routes, size_t nroutes);
int			http_callback(struct lws *wsi, enum lws_callback_reasons reason,
						  void *user, void *in, size_t len);

/* What a handler reads. */
const char *http_arg(struct http_req *r, const char *name);
const char *http_query(struct http_req *r, const char *name);
const char *http_token(struct http_req *r);
const char *http_peer(struct http_req *r);
const char *http_user(struct http_req *r);
const char *http_role(struct http_req *r);

/* How a handler answers. */
void		http_respond(struct http_req *r, int status, const char *ctype,
						 const char *body, size_t len);
void		http_respond_json(struct http_req *r, int status, const char *json);
void		http_respond_error(struct http_req *r, int status, const char *message);
void		http_respond_error_field(struct http_req *r, int status, const char *code,
									 const char *message, const char *field);
void		http_on_null(struct http_req *r, int status, const char *message);
void		http_run_json(struct http_req *r, const char *sql, int n, const char *const *params);

/* The http protocol: the API and probes; per-session data is one pointer. */
#define HTTP_PROTOCOL {"http", http_callback, sizeof(void *), 0, 0, NULL, 0}

#endif							/* PANKHA_HTTP_API_H */
