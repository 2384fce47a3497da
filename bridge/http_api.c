/*
 * http_api.c - HTTP requests: collecting them, routing them through the
 * route table (http_routes.c), authenticating dashboards, and answering.
 *
 * Each request lives in a heap struct (it may outlive its socket while a
 * query runs).  Bodies are collected up to --max-body, gunzipped when sent
 * with Content-Encoding: gzip, and answered from the query's callback by
 * asking for a WRITEABLE callback.  Errors are JSON
 * {"error": {"code", "message", "field"}}: 404 for no route, 405 for a
 * route with another method, 413, 503 with the database down, 401 and 403
 * for dashboard tokens and roles, 400 for a body that is not a JSON
 * object, and the status of the SQLSTATE (docs/api-functions.md) for an
 * error of the extension, with the field its PG_DIAG_COLUMN_NAME names.
 */
#include "http_api.h"
#include "metrics.h"
#include "limits.h"
#include "tls.h"

#include <string.h>
#include <zlib.h>

#define HTTP_MAX_ARGS 4			/* {name} segments in one pattern */
#define HTTP_MAX_QUERY 16		/* query arguments kept */
#define HTTP_MAX_SEGMENT 128	/* bytes of one {name} segment */

/* One HTTP request. */
struct http_req
{
	struct lws *wsi;			/* NULL once the socket closed */
	int			refs;			/* socket + query */
	const char *method;			/* "GET", "POST", ... */
	bool		has_body;		/* POST, PUT, PATCH: wait for the body */
	char		path[256];
	char		peer[64];
	char	   *token;			/* bearer token or NULL */
	bool		gzip;			/* Content-Encoding: gzip */
	unsigned char *body;
	size_t		body_len;
	bool		body_too_big;
	const struct http_route *route; /* once matched */
	char		role[16];		/* dashboard role once authenticated */
	char		user[80];		/* dashboard user once authenticated */
	const char *arg_names[HTTP_MAX_ARGS];	/* {name}s of the route's pattern */
	char	   *args[HTTP_MAX_ARGS];	/* and the segments they matched */
	char	   *query[HTTP_MAX_QUERY];	/* "name=value" (decoded by lws) */
	int			nquery;
	int			null_status;	/* status when the query returns NULL */
	const char *null_message;	/* and its message */
	char	   *origin;			/* Origin header when --cors-origin allows it */
	char	   *preflight_methods;	/* Access-Control-Allow-Methods of a preflight */
	int			retry_after;	/* seconds, with a 429 */
	int			status;			/* response */
	const char *ctype;
	unsigned char *resp;		/* LWS_PRE headroom, then resp_len bytes */
	size_t		resp_len;
	bool		answered;
	lws_usec_t	started;		/* when the request arrived (for /metrics) */
};

/* The pss of the http protocol. */
struct http_session
{
	struct http_req *req;
};

static const struct http_route *routes;
static size_t nroutes;

static void route(struct http_req *r);

/* The route table (http_routes.c). */
void
http_init(const struct http_route *table, size_t n)
{
	routes = table;
	nroutes = n;
}

static void
req_release(struct http_req *r)
{
	if (--r->refs > 0)
		return;
	free(r->token);
	free(r->origin);
	free(r->preflight_methods);
	free(r->body);
	free(r->resp);
	for (int i = 0; i < HTTP_MAX_ARGS; i++)
		free(r->args[i]);
	for (int i = 0; i < r->nquery; i++)
		free(r->query[i]);
	free(r);
}

/* ---------------------------------------------------------------- for handlers */

/* The path segment {name} of the route's pattern matched, or NULL. */
const char *
http_arg(struct http_req *r, const char *name)
{
	size_t		n = strlen(name);

	for (int i = 0; i < HTTP_MAX_ARGS && r->arg_names[i]; i++)
		if (!strncmp(r->arg_names[i], name, n) && r->arg_names[i][n] == '}')
			return r->args[i];
	return NULL;
}

/* The query argument name (?name=value), or NULL. */
const char *
http_query(struct http_req *r, const char *name)
{
	size_t		n = strlen(name);

	for (int i = 0; i < r->nquery; i++)
		if (!strncmp(r->query[i], name, n) && r->query[i][n] == '=')
			return r->query[i] + n + 1;
	return NULL;
}

const char *
http_token(struct http_req *r)
{
	return r->token;
}

const char *
http_peer(struct http_req *r)
{
	return r->peer;
}

/* The dashboard user (routes with a dashboard role), else "". */
const char *
http_user(struct http_req *r)
{
	return r->user;
}

/* The dashboard role of the token (routes with a dashboard role), else "". */
const char *
http_role(struct http_req *r)
{
	return r->role;
}

/* Set the response and ask to write it. */
void
http_respond(struct http_req *r, int status, const char *ctype, const char *body, size_t len)
{
	if (r->answered)
		return;
	r->answered = true;
	r->status = status;
	if (status == 401)
		limits_auth_failed(r->peer);	/* M5: refused credentials per address */
	r->ctype = ctype;
	metrics_http_answered(r->route ? r->route->method : NULL, r->route ? r->route->pattern : NULL,
						  (double) (now_us() - r->started) / 1e6);
	r->resp = malloc(LWS_PRE + len + 1);
	if (r->resp)
	{
		memcpy(r->resp + LWS_PRE, body, len);
		r->resp_len = len;
	}
	else
		r->status = 500;
	if (r->wsi)
		lws_callback_on_writable(r->wsi);
}

void
http_respond_json(struct http_req *r, int status, const char *json)
{
	http_respond(r, status, "application/json", json, strlen(json));
}

/* {"error": {"code", "message", "field"}} with status; field may be NULL. */
void
http_respond_error_field(struct http_req *r, int status, const char *code,
						 const char *message, const char *field)
{
	cJSON	   *o = cJSON_CreateObject();
	cJSON	   *e = cJSON_AddObjectToObject(o, "error");
	char	   *text;

	cJSON_AddStringToObject(e, "code", code ? code : api_error_code(status));
	cJSON_AddStringToObject(e, "message", message);
	if (field && *field)
		cJSON_AddStringToObject(e, "field", field);
	else
		cJSON_AddNullToObject(e, "field");
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	http_respond_json(r, status, text ? text :
					  "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\",\"field\":null}}");
	free(text);
}

void
http_respond_error(struct http_req *r, int status, const char *message)
{
	http_respond_error_field(r, status, NULL, message, NULL);
}

/* What http_run_json answers when its query returns no row or NULL (default 404). */
void
http_on_null(struct http_req *r, int status, const char *message)
{
	r->null_status = status;
	r->null_message = message;
}

/* HTTP status for a failed query (the table is actions.c's). */
static int
status_for(PGresult *res)
{
	return api_error_status(PQresultErrorField(res, PG_DIAG_SQLSTATE), db_error_is_data(res));
}

/* Answer a failed query: its status, message, and the field it names. */
static void
respond_db_error(struct http_req *r, PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	int			status = status_for(res);

	http_respond_error_field(r, status, NULL,
							 m ? m : "database error",
							 PQresultErrorField(res, PG_DIAG_COLUMN_NAME));
}

/* Answer with the query's one text value, or its error. */
static void
json_result_done(struct db_query *q, PGresult *res)
{
	struct http_req *r = q->arg;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 0))
		http_respond_json(r, 200, PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		http_respond_error(r, r->null_status ? r->null_status : 404,
						   r->null_message ? r->null_message : "not found");
	else
		respond_db_error(r, res);
	req_release(r);
}

/*
 * Run sql with up to DB_MAX_PARAMS text parameters (NULL: SQL NULL) and
 * answer with the one text value it returns: 200 with it as JSON, the
 * http_on_null() status without it, the status_for() its error.
 */
void
http_run_json(struct http_req *r, const char *sql, int n, const char *const *params)
{
	struct db_query *q = db_query_new(LANE_GENERAL, sql, json_result_done, r);

	if (!q)
	{
		http_respond_error(r, 500, "out of memory");
		return;
	}
	/* what changes state (enrollment, commands) must not run twice (db.c) */
	q->once = strcmp(r->route->method, "GET") != 0;
	for (int i = 0; i < n; i++)
		if (db_query_param(q, params[i], params[i] ? strlen(params[i]) : 0))
		{
			db_query_free(q);
			http_respond_error(r, 500, "out of memory");
			return;
		}
	r->refs++;
	db_submit(q);
}

/* Set member name of o to item, replacing one there. */
static void
args_set(cJSON *o, const char *name, cJSON *item)
{
	if (cJSON_GetObjectItemCaseSensitive(o, name))
		cJSON_ReplaceItemInObjectCaseSensitive(o, name, item);
	else
		cJSON_AddItemToObject(o, name, item);
}

/*
 * The handler of every API_ROUTE row: the args object (body, then query
 * string, then path {params}, then the row's fixed members) passed with
 * the token's user and role to the row's function; its result is the
 * body of the 200, its error mapped by status_for().
 */
void
http_call_api(struct http_req *r, cJSON *body)
{
	cJSON	   *args = body ? cJSON_Duplicate(body, true) : cJSON_CreateObject();
	char	   *text;

	if (!args)
	{
		http_respond_error(r, 500, "out of memory");
		return;
	}
	for (int i = 0; i < r->nquery; i++)
	{
		char	   *eq = strchr(r->query[i], '=');
		char		name[64];

		if (!eq || eq == r->query[i] || (size_t) (eq - r->query[i]) >= sizeof(name))
			continue;
		memcpy(name, r->query[i], (size_t) (eq - r->query[i]));
		name[eq - r->query[i]] = '\0';
		args_set(args, name, cJSON_CreateString(eq + 1));
	}
	for (int i = 0; i < HTTP_MAX_ARGS && r->arg_names[i]; i++)
	{
		char		name[64];
		size_t		n = strcspn(r->arg_names[i], "}");

		if (n >= sizeof(name))
			continue;
		memcpy(name, r->arg_names[i], n);
		name[n] = '\0';
		args_set(args, name, cJSON_CreateString(r->args[i]));
	}
	if (r->route->fixed)
	{
		cJSON	   *fixed = cJSON_Parse(r->route->fixed);
		cJSON	   *m;

		cJSON_ArrayForEach(m, fixed)
			args_set(args, m->string, cJSON_Duplicate(m, true));
		cJSON_Delete(fixed);
	}
	text = cJSON_PrintUnformatted(args);
	cJSON_Delete(args);
	if (!text)
	{
		http_respond_error(r, 500, "out of memory");
		return;
	}
	{
		const char *params[] = {r->user, r->role, text};

		http_run_json(r, r->route->sql, 3, params);
	}
	free(text);
}

/* ---------------------------------------------------------------- body */

/* Gunzip the body in place, refusing more than --max-body; -1 on error. */
static int
gunzip_body(struct http_req *r, const char **err)
{
	z_stream	z;
	unsigned char *out = NULL;
	size_t		cap = 0, len = 0;
	int			rc;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
	{
		*err = "cannot inflate";
		return -1;
	}
	z.next_in = r->body;
	z.avail_in = (uInt) r->body_len;
	do
	{
		if (len == cap)
		{
			size_t		ncap = cap ? cap * 2 : 4096;
			unsigned char *n;

			if (ncap > srv.cfg.max_body + 1)
				ncap = srv.cfg.max_body + 1;
			if (ncap <= len)
			{
				inflateEnd(&z);
				free(out);
				*err = "request body too large once inflated";
				return -2;
			}
			n = realloc(out, ncap);
			if (!n)
			{
				inflateEnd(&z);
				free(out);
				*err = "out of memory";
				return -1;
			}
			out = n;
			cap = ncap;
		}
		z.next_out = out + len;
		z.avail_out = (uInt) (cap - len);
		rc = inflate(&z, Z_NO_FLUSH);
		len = cap - z.avail_out;
		if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && z.avail_out == 0))
		{
			inflateEnd(&z);
			free(out);
			*err = "request body is not valid gzip";
			return -1;
		}
	} while (rc != Z_STREAM_END);
	inflateEnd(&z);
	free(r->body);
	r->body = out;
	r->body_len = len;
	return 0;
}

/* ---------------------------------------------------------------- routing */

/*
 * Does path match pattern?  "{name}" matches one non-empty segment (at
 * most HTTP_MAX_SEGMENT bytes), kept in r when r is not NULL.
 */
static bool
match(const char *pattern, const char *path, struct http_req *r)
{
	int			nargs = 0;

	while (*pattern && *path)
	{
		if (*pattern == '{')
		{
			const char *close = strchr(pattern, '}');
			size_t		seg = strcspn(path, "/");

			if (!close || seg == 0 || seg > HTTP_MAX_SEGMENT || nargs >= HTTP_MAX_ARGS)
				return false;
			if (r)
			{
				r->arg_names[nargs] = NULL;
				free(r->args[nargs]);
				if (!(r->args[nargs] = xstrndup(path, seg)))
					return false;
				/* the name is the pattern's text, compared up to its '}' */
				r->arg_names[nargs] = pattern + 1;
			}
			nargs++;
			pattern = close + 1;
			path += seg;
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	return !*pattern && !*path;
}

/* The route for a request: *r->route, or why not (404, 405). */
static int
find_route(struct http_req *r)
{
	const char *method = r->method;
	bool		other_method = false;

	for (size_t i = 0; i < nroutes; i++)
	{
		if (!match(routes[i].pattern, r->path, NULL))
			continue;
		if (strcmp(routes[i].method, method))
		{
			other_method = true;
			continue;
		}
		r->route = &routes[i];
		return match(routes[i].pattern, r->path, r) ? 0 : 500;
	}
	return other_method ? 405 : 404;
}

/* Run the route's handler with the body parsed. */
static void
run_route(struct http_req *r)
{
	cJSON	   *body = NULL;

	if (r->has_body && r->body_len == 0 && r->route->sql)
		body = cJSON_CreateObject();	/* an API call without a body: no args */
	else if (r->has_body)
	{
		body = json_parse((const char *) r->body, r->body_len);
		if (!cJSON_IsObject(body))
		{
			cJSON_Delete(body);
			http_respond_error(r, 400, "body is not a JSON object");
			return;
		}
	}
	r->route->handle(r, body);
	cJSON_Delete(body);
}

static void
ui_auth_done(struct db_query *q, PGresult *res)
{
	struct http_req *r = q->arg;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		respond_db_error(r, res);
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		http_respond_error(r, 401, "invalid dashboard token");
	else
	{
		snprintf(r->role, sizeof(r->role), "%s", PQgetvalue(res, 0, 0));
		snprintf(r->user, sizeof(r->user), "%s", PQgetvalue(res, 0, 1));
		if (!role_allows(r->role, r->route->min_role))
		{
			char		m[96];

			snprintf(m, sizeof(m), "this needs the %s role (the token has %s)",
					 role_name(r->route->min_role), r->role);
			http_respond_error(r, 403, m);
		}
		else
			run_route(r);
	}
	req_release(r);
}

/* Is origin one of --cors-origin's? */
static bool
cors_allowed(const char *origin)
{
	const char *list = srv.cfg.cors_origins;
	size_t		n = strlen(origin);

	while (list && *list)
	{
		size_t		len = strcspn(list, ", ");

		if (len == n && !strncmp(list, origin, n))
			return true;
		list += len;
		list += strspn(list, ", ");
	}
	return false;
}

/*
 * A CORS preflight (OPTIONS): the methods the path's routes take, to an
 * origin --cors-origin lists; 403 to any other, 404 for no route.
 */
static void
preflight(struct http_req *r)
{
	struct sbuf methods = {0};

	for (size_t i = 0; i < nroutes; i++)
		if (match(routes[i].pattern, r->path, NULL))
			sbuf_printf(&methods, "%s%s", methods.len ? ", " : "", routes[i].method);
	if (!methods.len)
		http_respond_error(r, 404, "no such endpoint");
	else if (!r->origin)
		http_respond_error(r, 403, "origin not allowed (--cors-origin)");
	else
	{
		r->preflight_methods = methods.data;
		methods.data = NULL;
		http_respond(r, 204, "text/plain", "", 0);
	}
	sbuf_free(&methods);
}

/* Past a rate limit of --http-rate-ip or --http-rate-token: 429. */
static bool
rate_limited(struct http_req *r)
{
	if (attempts_allow("http-ip", r->peer, srv.cfg.http_rate_ip) &&
		(!r->token || attempts_allow("http-token", r->token, srv.cfg.http_rate_token)))
		return false;
	srv.m.http_rate_limited++;
	/* the limiter's counts start again each minute: at most 60 s */
	r->retry_after = 60;
	http_respond_error(r, 429, r->token ? "too many requests for this token or address; retry later" :
					   "too many requests from this address; retry later");
	return true;
}

/* Dispatch a complete request. */
static void
route(struct http_req *r)
{
	int			rc;

	if (!strcmp(r->method, "OPTIONS"))
	{
		preflight(r);
		return;
	}
	rc = find_route(r);
	if (rc)
	{
		http_respond_error(r, rc, rc == 405 ? "this path does not take this method" :
						   rc == 404 ? (strncmp(r->path, "/api/", 5) ? "not found" : "no such endpoint") :
						   "out of memory");
		return;
	}
	if (r->route->min_role == ROLE_PUBLIC)
	{
		run_route(r);
		return;
	}
	if (rate_limited(r))
		return;
	if (limits_auth_blocked(r->peer))
	{
		/* M5: past --auth-fail-limit-ip, no credential is looked at (nor audited) */
		srv.m.auth_fail_limited++;
		r->retry_after = 60;
		http_respond_error(r, 429, "too many refused credentials from this address; retry later");
		return;
	}
	if (r->body_too_big)
	{
		http_respond_error(r, 413, "request body too large");
		return;
	}
	if (r->gzip && r->body_len)
	{
		const char *err = NULL;
		int			rc = gunzip_body(r, &err);

		if (rc)
		{
			http_respond_error(r, rc == -2 ? 413 : 400, err);
			return;
		}
	}
	if (!db_ready())
	{
		http_respond_error(r, 503, "database unavailable");
		return;
	}
	if (r->route->min_role == ROLE_AGENT)
	{
		run_route(r);
		return;
	}
	if (!r->token)
	{
		http_respond_error(r, 401, "dashboard token missing (Authorization: Bearer <token>)");
		return;
	}
	{
		struct db_query *q = db_query_new(LANE_GENERAL,
										  "SELECT role, user_name FROM pankha.authenticate_ui($1, $2)",
										  ui_auth_done, r);

		if (!q || db_query_param(q, r->token, strlen(r->token)) ||
			db_query_param(q, r->peer, strlen(r->peer)))
		{
			if (q)
				db_query_free(q);
			http_respond_error(r, 500, "out of memory");
			return;
		}
		r->refs++;
		db_submit(q);
	}
}

static int
add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
		   unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *) name,
									   (const unsigned char *) value, (int) strlen(value), p, end);
}

/* Retry-After of a 429, and the CORS headers for an allowed origin. */
static int
add_extra_headers(struct lws *wsi, struct http_req *r, unsigned char **p, unsigned char *end)
{
	char		n[16];

	if (r->retry_after)
	{
		snprintf(n, sizeof(n), "%d", r->retry_after);
		if (add_header(wsi, "retry-after:", n, p, end))
			return -1;
	}
	if (!r->origin)
		return 0;
	if (add_header(wsi, "access-control-allow-origin:", r->origin, p, end) ||
		add_header(wsi, "vary:", "Origin", p, end) ||
		add_header(wsi, "access-control-expose-headers:", "Retry-After", p, end))
		return -1;
	if (r->preflight_methods &&
		(add_header(wsi, "access-control-allow-methods:", r->preflight_methods, p, end) ||
		 add_header(wsi, "access-control-allow-headers:", "Authorization, Content-Type, Content-Encoding", p, end) ||
		 add_header(wsi, "access-control-max-age:", "600", p, end)))
		return -1;
	return 0;
}

/* The http protocol callback. */
int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len)
{
	struct http_session *s;
	struct http_req *r;

	/* every connection passes here first and last, whatever it becomes (limits.c) */
	switch (reason)
	{
		case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
			/* lws 4.1.6 passes the address as user, the socket as in */
			return limits_filter_network(user);
		case LWS_CALLBACK_WSI_CREATE:
			limits_wsi_create(wsi);
			return 0;
		case LWS_CALLBACK_WSI_DESTROY:
			limits_wsi_destroy(wsi);
			return 0;
		case LWS_CALLBACK_HTTP_FILE_COMPLETION:
			limits_request_done(wsi);
			break;
		default:
			break;
	}
	s = user;
	r = s ? s->req : NULL;
	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			{
				char		enc[16];
				int			n;

				r = calloc(1, sizeof(*r));
				if (!r)
					return -1;
				r->refs = 1;
				r->wsi = wsi;
				r->started = now_us();
				s->req = r;
				{
					static const struct
					{
						enum lws_token_indexes tok;
						const char *name;
						bool		body;
					}			methods[] = {
						{WSI_TOKEN_GET_URI, "GET", false},
						{WSI_TOKEN_POST_URI, "POST", true},
						{WSI_TOKEN_PUT_URI, "PUT", true},
						{WSI_TOKEN_PATCH_URI, "PATCH", true},
						{WSI_TOKEN_DELETE_URI, "DELETE", false},
						{WSI_TOKEN_OPTIONS_URI, "OPTIONS", false},
					};

					n = -1;
					r->method = "";
					for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
						if (lws_hdr_total_length(wsi, methods[i].tok) > 0)
						{
							r->method = methods[i].name;
							r->has_body = methods[i].body;
							n = lws_hdr_copy(wsi, r->path, sizeof(r->path), methods[i].tok);
							break;
						}
					if (n < 0)
						r->path[0] = '\0';
				}
				limits_client_addr(wsi, r->peer, sizeof(r->peer));
				if (http_bearer_token(wsi, &r->token) < 0)
					return -1;
				/* the query arguments, each "name=value" as lws decoded it */
				for (int i = 0; r->nquery < HTTP_MAX_QUERY; i++)
				{
					int			flen = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);

					if (flen <= 0)
						break;
					if (!(r->query[r->nquery] = malloc((size_t) flen + 1)))
						return -1;
					if (lws_hdr_copy_fragment(wsi, r->query[r->nquery], flen + 1,
											  WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
					{
						free(r->query[r->nquery]);
						break;
					}
					r->nquery++;
				}
				{
					int			olen = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);

					if (olen > 0 && olen < 512 && srv.cfg.cors_origins)
					{
						char		origin[512];

						if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0 &&
							cors_allowed(origin) && !(r->origin = strdup(origin)))
							return -1;
					}
				}
				if (lws_hdr_copy(wsi, enc, sizeof(enc), WSI_TOKEN_HTTP_CONTENT_ENCODING) > 0 &&
					!strcasecmp(enc, "gzip"))
					r->gzip = true;
				if (!r->has_body)
					route(r);
				/* POST, PUT, PATCH: wait for the body */
				return 0;
			}
		case LWS_CALLBACK_HTTP_BODY:
			if (!r)
				return -1;
			if (r->body_too_big || r->body_len + len > srv.cfg.max_body)
			{
				r->body_too_big = true;
				break;
			}
			{
				unsigned char *n = realloc(r->body, r->body_len + len + 1);

				if (!n)
					return -1;
				r->body = n;
				memcpy(r->body + r->body_len, in, len);
				r->body_len += len;
			}
			break;
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			if (r)
				route(r);
			return 0;
		case LWS_CALLBACK_HTTP_WRITEABLE:
			{
				unsigned char hdr[LWS_PRE + 2048];
				unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

				if (!r || !r->answered)
					break;
				if (lws_add_http_common_headers(wsi, r->status, r->ctype, r->resp_len, &p, end) ||
					lws_add_http_header_by_name(wsi, (const unsigned char *) "cache-control:",
												(const unsigned char *) "no-store", 8, &p, end) ||
					add_extra_headers(wsi, r, &p, end) ||
					lws_finalize_write_http_header(wsi, start, &p, end))
					return 1;
				if (r->resp_len &&
					lws_write(wsi, r->resp + LWS_PRE, r->resp_len, LWS_WRITE_HTTP_FINAL) !=
					(int) r->resp_len)
					return 1;
				/* done with it; the connection may carry another request */
				s->req = NULL;
				r->wsi = NULL;
				req_release(r);
				if (lws_http_transaction_completed(wsi))
					return -1;
				limits_request_done(wsi);
				return 0;
			}
		case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
			/* the vhost's SSL_CTX, kept for reloading the certificate */
			tls_remember_server_ctx(user);
			return 0;
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (r)
			{
				s->req = NULL;
				r->wsi = NULL;
				req_release(r);
			}
			break;
		default:
			break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
