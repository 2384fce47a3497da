/*
 * http_api.c - HTTP requests: collecting them, routing them through the
 * route table (http_routes.c), authenticating dashboards, and answering.
 *
 * Each request lives in a heap struct (it may outlive its socket while a
 * query runs).  Bodies are collected up to --max-body, gunzipped when sent
 * with Content-Encoding: gzip, and answered from the query's callback by
 * asking for a WRITEABLE callback.  Errors are JSON {"error": message}:
 * 404 for no route, 405 for a route with another method, 413, 503 with
 * the database down, 401 and 403 for dashboard tokens and roles, 400 for
 * a body that is not a JSON object.
 */
#include "http_api.h"
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
	const char *method;			/* "GET", "POST", ... ("" if none of those) */
	bool		has_body;		/* POST, PUT, PATCH: routed once the body is complete */
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
	int			status;			/* response */
	const char *ctype;
	unsigned char *resp;		/* LWS_PRE headroom, then resp_len bytes */
	size_t		resp_len;
	bool		answered;
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

/* Set the response and ask to write it. */
void
http_respond(struct http_req *r, int status, const char *ctype, const char *body, size_t len)
{
	if (r->answered)
		return;
	r->answered = true;
	r->status = status;
	r->ctype = ctype;
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

/* {"error": message} with status. */
void
http_respond_error(struct http_req *r, int status, const char *message)
{
	cJSON	   *o = cJSON_CreateObject();
	char	   *text;

	cJSON_AddStringToObject(o, "error", message);
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	http_respond_json(r, status, text ? text : "{\"error\":\"out of memory\"}");
	free(text);
}

/* What http_run_json answers when its query returns no row or NULL (default 404). */
void
http_on_null(struct http_req *r, int status, const char *message)
{
	r->null_status = status;
	r->null_message = message;
}

/* HTTP status for a failed query: the client's fault or ours. */
static int
status_for(PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (!state)
		return 503;
	if (!strncmp(state, "28", 2))
		return 401;
	if (!strncmp(state, "42501", 5))
		return 403;
	if (!strcmp(state, "P0002") || !strcmp(state, "02000"))
		return 404;
	if (db_error_is_data(res))
		return 400;
	return 500;
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
	{
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		http_respond_error(r, status_for(res), m ? m : "database error");
	}
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

/* The methods a route may have, how lws tells them, and whether a body comes. */
static const struct
{
	enum lws_token_indexes token;
	const char *name;
	bool		body;
}			methods[] = {
	{WSI_TOKEN_POST_URI, "POST", true},
	{WSI_TOKEN_PUT_URI, "PUT", true},
	{WSI_TOKEN_PATCH_URI, "PATCH", true},
	{WSI_TOKEN_DELETE_URI, "DELETE", false},
	{WSI_TOKEN_GET_URI, "GET", false},
};

/*
 * The route for a request: *r->route, or why not (404; 405 with
 * *other the method of a route for the path).
 */
static int
find_route(struct http_req *r, const char **other)
{
	*other = NULL;
	for (size_t i = 0; i < nroutes; i++)
	{
		if (!match(routes[i].pattern, r->path, NULL))
			continue;
		if (strcmp(routes[i].method, r->method))
		{
			if (!*other)
				*other = routes[i].method;
			continue;
		}
		r->route = &routes[i];
		return match(routes[i].pattern, r->path, r) ? 0 : 500;
	}
	return *other ? 405 : 404;
}

/* Run the route's handler with the body parsed. */
static void
run_route(struct http_req *r)
{
	cJSON	   *body = NULL;

	if (r->has_body)
	{
		body = cJSON_ParseWithLength((const char *) r->body, r->body_len);
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
	{
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		http_respond_error(r, status_for(res), m ? m : "database error");
	}
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

/* Dispatch a complete request. */
static void
route(struct http_req *r)
{
	const char *other;
	int			rc = find_route(r, &other);

	if (rc == 405)
	{
		char		m[32];

		snprintf(m, sizeof(m), "use %s", other);
		http_respond_error(r, 405, m);
		return;
	}
	if (rc)
	{
		http_respond_error(r, rc, rc == 404 ? (strncmp(r->path, "/api/", 5) ? "not found" :
											   "no such endpoint") : "out of memory");
		return;
	}
	if (r->route->min_role == ROLE_PUBLIC)
	{
		run_route(r);
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

/* The http protocol callback. */
int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len)
{
	struct http_session *s = user;
	struct http_req *r = s ? s->req : NULL;

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
				s->req = r;
				r->method = "";
				for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
					if (lws_hdr_total_length(wsi, methods[i].token) > 0)
					{
						r->method = methods[i].name;
						r->has_body = methods[i].body;
						n = lws_hdr_copy(wsi, r->path, sizeof(r->path), methods[i].token);
						if (n < 0)
							r->path[0] = '\0';
						break;
					}
				lws_get_peer_simple(wsi, r->peer, sizeof(r->peer));
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
				unsigned char hdr[LWS_PRE + 512];
				unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

				if (!r || !r->answered)
					break;
				if (lws_add_http_common_headers(wsi, r->status, r->ctype, r->resp_len, &p, end) ||
					lws_add_http_header_by_name(wsi, (const unsigned char *) "cache-control:",
												(const unsigned char *) "no-store", 8, &p, end) ||
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
