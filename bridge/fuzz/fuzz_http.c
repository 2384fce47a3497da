/*
 * fuzz_http.c - libFuzzer target: HTTP requests as the bridge parses them.
 *
 * An input is one request, written as on the wire:
 *
 *     METHOD /path?name=value&...
 *     header: value
 *     ...
 *     (empty line)
 *     body
 *
 * The method picks lws' URI token, the path and the query arguments are
 * percent-decoded and split at '&' as lws hands them over, and the
 * Authorization, Origin and Content-Encoding headers reach the bridge
 * through lws' header calls.  Two headers are the harness's: "x-gzip: 1"
 * gzips the body before it is sent (with Content-Encoding: gzip), so that
 * valid compressed bodies are in reach as well as arbitrary ones, and
 * "x-chunk: N" delivers the body in pieces of N bytes.  The request goes
 * through http_callback() from LWS_CALLBACK_HTTP to its response
 * (HTTP_WRITEABLE); this file includes http_api.c to see the request's
 * state.  The database knows two dashboard tokens, "fuzz-admin" and
 * "fuzz-viewer", answers API calls with a small JSON object and anything
 * else with an error.  Every request must be answered, with a status the
 * bridge documents, and leave no query behind.  --max-body is 64 KB here.
 */
#include "harness.h"
#include "../http_api.c"
#include "../http_routes.h"

#include <ctype.h>

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static PGresult *
answer(struct db_query *q)
{
	if (strstr(q->sql, "pankha.authenticate_ui("))
	{
		const char *admin[] = {"admin", "fuzz"};
		const char *viewer[] = {"viewer", "fuzz"};
		PGresult   *res;
		PGresAttDesc attrs[2] = {{"role"}, {"user_name"}};

		if (q->params[0] && !strcmp(q->params[0], "fuzz-admin"))
			return harness_row(2, admin);
		if (q->params[0] && !strcmp(q->params[0], "fuzz-viewer"))
			return harness_row(2, viewer);
		res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
		if (!res || !PQsetResultAttrs(res, 2, attrs))
			abort();
		return res;				/* no such token: no row */
	}
	if (strstr(q->sql, "::text"))
	{
		const char *v[] = {"{\"ok\":true}"};

		return harness_row(1, v);
	}
	return NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	harness_init();
	srv.cfg.max_body = 65536;
	srv.cfg.cors_origins = "https://dash.example, http://localhost:5173";
	http_init(http_routes, http_nroutes);
	return 0;
}

/* Percent-decode s[0..n) into a new string, stopping at a decoded NUL as lws does. */
static char *
decode(const char *s, size_t n)
{
	char	   *d = malloc(n + 1), *p = d;

	if (!d)
		abort();
	for (size_t i = 0; i < n; i++)
	{
		int			c = (unsigned char) s[i];

		if (c == '%' && i + 2 < n && isxdigit((unsigned char) s[i + 1]) &&
			isxdigit((unsigned char) s[i + 2]))
		{
			char		hex[3] = {s[i + 1], s[i + 2], 0};

			c = (int) strtol(hex, NULL, 16);
			i += 2;
		}
		else if (c == '+')
			c = ' ';
		if (!c)
			break;
		*p++ = (char) c;
	}
	*p = '\0';
	return d;
}

/* gzip in[0..n) (the harness's x-gzip header). */
static unsigned char *
gzip(const unsigned char *in, size_t n, size_t *outlen)
{
	z_stream	z = {0};
	size_t		cap = n + n / 8 + 64;
	unsigned char *out = malloc(cap);

	if (!out || deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = (unsigned char *) in;
	z.avail_in = (uInt) n;
	z.next_out = out;
	z.avail_out = (uInt) cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		abort();
	*outlen = cap - z.avail_out;
	deflateEnd(&z);
	return out;
}

static const int documented[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429,
500, 503};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct
	{
		const char *name;
		enum lws_token_indexes tok;
		bool		body;
	}			methods[] = {
		{"GET", WSI_TOKEN_GET_URI, false},
		{"POST", WSI_TOKEN_POST_URI, true},
		{"PUT", WSI_TOKEN_PUT_URI, true},
		{"PATCH", WSI_TOKEN_PATCH_URI, true},
		{"DELETE", WSI_TOKEN_DELETE_URI, false},
		{"OPTIONS", WSI_TOKEN_OPTIONS_URI, false},
	};
	struct fake_wsi w = {0};
	struct http_session s = {0};
	const char *text = (const char *) data;
	const char *end = text + size;
	const char *nl, *sp, *q;
	char	   *path = NULL, *heap[FAKE_MAX_FRAGS + FAKE_MAX_HEADERS];
	int			nheap = 0, method = -1;
	size_t		chunk = 1024;
	bool		do_gzip = false;
	unsigned char *body = NULL;
	size_t		body_len = 0;
	int			status = 0;

	attempts_reset();
	/* the request line */
	nl = memchr(text, '\n', size);
	if (!nl)
		nl = end;
	sp = memchr(text, ' ', (size_t) (nl - text));
	if (!sp)
		return 0;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if ((size_t) (sp - text) == strlen(methods[i].name) &&
			!memcmp(text, methods[i].name, (size_t) (sp - text)))
			method = (int) i;
	if (method < 0)
		return 0;
	sp++;
	q = memchr(sp, '?', (size_t) (nl - sp));
	path = decode(sp, (size_t) ((q ? q : nl) - sp));
	heap[nheap++] = path;
	fake_header(&w, methods[method].tok, path, (int) strlen(path));
	while (q && q < nl && nheap <= FAKE_MAX_FRAGS)
	{
		const char *a = q + 1;
		const char *amp = memchr(a, '&', (size_t) (nl - a));
		char	   *arg = decode(a, (size_t) ((amp ? amp : nl) - a));

		heap[nheap++] = arg;
		if (*arg)
			w.args[w.nargs++] = arg;
		q = amp;
	}
	/* headers, up to an empty line */
	text = nl < end ? nl + 1 : end;
	while (text < end)
	{
		const char *colon;
		size_t		nlen;
		char	   *value;

		nl = memchr(text, '\n', (size_t) (end - text));
		if (!nl)
			nl = end;
		if (nl == text)
		{
			text = nl + 1;
			break;
		}
		colon = memchr(text, ':', (size_t) (nl - text));
		if (colon && nheap < (int) (sizeof(heap) / sizeof(heap[0])))
		{
			const char *v = colon + 1;

			while (v < nl && *v == ' ')
				v++;
			value = malloc((size_t) (nl - v) + 1);
			if (!value)
				abort();
			memcpy(value, v, (size_t) (nl - v));
			value[nl - v] = '\0';
			heap[nheap++] = value;
			nlen = (size_t) (colon - text);
#define IS(h) (nlen == strlen(h) && !strncasecmp(text, h, nlen))
			if (IS("authorization"))
				fake_header(&w, WSI_TOKEN_HTTP_AUTHORIZATION, value, (int) strlen(value));
			else if (IS("origin"))
				fake_header(&w, WSI_TOKEN_ORIGIN, value, (int) strlen(value));
			else if (IS("content-encoding"))
				fake_header(&w, WSI_TOKEN_HTTP_CONTENT_ENCODING, value, (int) strlen(value));
			else if (IS("x-gzip"))
				do_gzip = true;
			else if (IS("x-chunk"))
				chunk = (size_t) (atoi(value) & 0xfff) + 1;
#undef IS
		}
		text = nl + 1;
	}
	if (text < end)
	{
		body_len = (size_t) (end - text);
		body = malloc(body_len);
		if (!body)
			abort();
		memcpy(body, text, body_len);
	}
	if (do_gzip)
	{
		unsigned char *z = gzip(body ? body : (const unsigned char *) "", body_len, &body_len);

		free(body);
		body = z;
		fake_header(&w, WSI_TOKEN_HTTP_CONTENT_ENCODING, "gzip", 4);
	}

	w.user = &s;
	if (http_callback((struct lws *) &w, LWS_CALLBACK_HTTP, &s, path, strlen(path)) == 0 &&
		methods[method].body)
	{
		bool		dropped = false;

		for (size_t off = 0; off < body_len && !dropped; off += chunk)
		{
			size_t		n = body_len - off < chunk ? body_len - off : chunk;

			dropped = http_callback((struct lws *) &w, LWS_CALLBACK_HTTP_BODY, &s,
									body + off, n) != 0;
		}
		if (!dropped)
			http_callback((struct lws *) &w, LWS_CALLBACK_HTTP_BODY_COMPLETION, &s, NULL, 0);
	}
	harness_answer(answer);
	if (s.req && s.req->answered)
	{
		status = s.req->status;
		if (http_callback((struct lws *) &w, LWS_CALLBACK_HTTP_WRITEABLE, &s, NULL, 0) == 0 &&
			!w.written)
			abort();			/* answered, writable, yet nothing written */
	}
	else if (s.req)
	{
		fprintf(stderr, "a request was left unanswered\n");
		abort();
	}
	if (s.req)
		http_callback((struct lws *) &w, LWS_CALLBACK_CLOSED_HTTP, &s, NULL, 0);
	if (harness_pending())
		abort();
	if (status)
	{
		bool		known = false;

		for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
			known = known || documented[i] == status;
		if (!known)
		{
			fprintf(stderr, "undocumented status %d\n", status);
			abort();
		}
	}
	for (int i = 0; i < nheap; i++)
		free(heap[i]);
	free(body);
	return 0;
}
