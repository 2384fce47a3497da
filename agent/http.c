/*
 * http.c - one HTTP request at a time on the link's libwebsockets context:
 * a POST with a bearer token and a JSON body, and its response gathered up
 * to HTTP_RESP_MAX bytes.  The HTTP fallback (sync.c) and enrollment
 * (enroll.c) use it; each request gets its own connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

static void http_finish(struct http_req *r, bool ok);

/* End a request once: hand its outcome to r->done. */
static void
http_finish(struct http_req *r, bool ok)
{
	if (!r->in_flight)
		return;
	r->in_flight = false;
	r->wsi = NULL;
	if (r->resp)
		r->resp[r->resp_len] = '\0';
	r->done(r, ok);
}

/* The lws callback of the "pankha-http" protocol: headers, body, response. */
int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct http_req *r = lws_get_opaque_user_data(wsi);

	if (!r || r->wsi != wsi)
		return 0;
	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			{
				unsigned char **p = (unsigned char **) in,
						   *end = (*p) + len;
				char		clen[24];

				snprintf(clen, sizeof(clen), "%zu", r->body_len);
				if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
												 (const unsigned char *) r->auth,
												 (int) strlen(r->auth), p, end) ||
					lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
												 (const unsigned char *) "application/json", 16, p, end) ||
					lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
												 (const unsigned char *) clen, (int) strlen(clen), p, end))
					return -1;
				lws_client_http_body_pending(wsi, 1);
				lws_callback_on_writable(wsi);
				break;
			}
		case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
			{
				unsigned char *buf = malloc(LWS_PRE + r->body_len);
				int			n;

				if (!buf)
					return -1;
				memcpy(buf + LWS_PRE, r->body, r->body_len);
				lws_client_http_body_pending(wsi, 0);
				n = lws_write(wsi, buf + LWS_PRE, r->body_len, LWS_WRITE_HTTP_FINAL);
				free(buf);
				if (n < (int) r->body_len)
					return -1;
				r->link->bytes_out += r->body_len;
				break;
			}
		case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
			r->status = (int) lws_http_client_http_response(wsi);
			break;
		case LWS_CALLBACK_RECEIVE_CLIENT_HTTP:
			{
				char		buffer[4096 + LWS_PRE];
				char	   *px = buffer + LWS_PRE;
				int			lenx = sizeof(buffer) - LWS_PRE;

				if (lws_http_client_read(wsi, &px, &lenx) < 0)
					return -1;
				break;
			}
		case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
			{
				char	   *nb;

				if (r->resp_len + len + 1 > HTTP_RESP_MAX)
				{
					pk_log(PK_LOG_WARN, "HTTP response over %d bytes: dropped", HTTP_RESP_MAX);
					http_finish(r, false);
					return -1;
				}
				nb = realloc(r->resp, r->resp_len + len + 1);
				if (!nb)
				{
					http_finish(r, false);
					return -1;
				}
				r->resp = nb;
				memcpy(r->resp + r->resp_len, in, len);
				r->resp_len += len;
				r->link->bytes_in += len;
				break;
			}
		case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
			http_finish(r, true);

			/*
			 * One request per connection.  When the answer has
			 * Content-Length: 0 (a refused sync, say) lws 4.1 calls this
			 * while it parses the headers and does not close the
			 * connection when told to, so each refusal leaked a socket
			 * until the context ran out of descriptors; close it from
			 * the event loop instead.
			 */
			lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			return -1;
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			pk_log(PK_LOG_DEBUG, "HTTP %s: %s", r->path, in ? (const char *) in : "connection failed");
			http_finish(r, false);
			break;
		case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
			http_finish(r, r->status != 0 && r->resp_len > 0);
			break;
		default:
			break;
	}
	(void) user;
	return 0;
}

/* Start r (path, auth, body set); 0 when it is on its way. */
int
http_start(struct pk_link *l, struct http_req *r)
{
	struct lws_client_connect_info i;

	memset(&i, 0, sizeof(i));
	free(r->resp);
	r->resp = NULL;
	r->resp_len = 0;
	r->status = 0;
	r->in_flight = true;
	i.context = l->ctx;
	i.address = l->host;
	i.port = l->port;
	i.path = r->path;
	i.host = l->host;
	i.origin = l->host;
	i.method = "POST";
	i.alpn = "http/1.1";
	i.local_protocol_name = "pankha-http";
	i.opaque_user_data = r;
	i.pwsi = &r->wsi;
	if (l->tls)
	{
		i.ssl_connection = LCCSCF_USE_SSL;
		if (l->a->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
				LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
	}
	if (!lws_client_connect_via_info(&i))
	{
		r->in_flight = false;
		r->wsi = NULL;
		return -1;
	}
	return 0;
}
