/*
 * proxy_listen.c - --proxy-protocol: the bridge's own listening socket,
 * which reads the PROXY header (proxy.c) of each connection from a
 * --trusted-proxy before handing the socket to lws.
 *
 * lws 4.1.6 has no PROXY protocol, and once it owns a socket it reads
 * from it itself, so with --proxy-protocol the vhost does not listen
 * (CONTEXT_PORT_NO_LISTEN_SERVER, which keeps its TLS context) and this
 * file does, on the same libev loop.  A connection from a trusted proxy
 * must start with a header: its bytes are peeked and only the header's
 * own are taken off the socket, so the HTTP request or the TLS
 * ClientHello after it is still in the socket when
 * lws_adopt_descriptor_vhost() hands it to the vhost, which then does TLS
 * as its own listener would.  A connection from any other address is not
 * expected to send one and is adopted at once (a PROXY line from it is an
 * HTTP request lws refuses: only trusted proxies may name a client).
 * Either way admission.c admits the connection first, under the client's
 * address, and keeps that address for limits_client_addr().
 *
 * A trusted connection that closes, sends something that is not a
 * header, or has not sent its whole header within --proxy-protocol-timeout
 * is closed with a log line and counted (pankha_bridge_proxy_header_
 * refused_total, by reason).
 */
#define _GNU_SOURCE
#include "proxy.h"

#include "admission.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#define MAX_PENDING 4096

/* A connection from a trusted proxy whose header is not read yet. */
struct pending
{
	ev_io		io;
	ev_timer	timer;
	struct pending *prev, *next;
	int			fd;
	size_t		have;			/* header bytes in buf */
	size_t		skip;			/* TLV bytes of a v2 header still to drop */
	struct proxy_header hdr;	/* once decided */
	char		peer[INET6_ADDRSTRLEN];
	uint8_t		buf[PROXY_BUF];
};

static int	listen_fd = -1;
static ev_io listen_io;
static struct pending *pendings;
static int	npending;

static void
pending_free(struct pending *p)
{
	ev_io_stop(srv.loop, &p->io);
	ev_timer_stop(srv.loop, &p->timer);
	if (p->prev)
		p->prev->next = p->next;
	else
		pendings = p->next;
	if (p->next)
		p->next->prev = p->prev;
	npending--;
	free(p);
}

static void
refuse(struct pending *p, int reason, const char *why)
{
	srv.m.proxy_refused[reason]++;
	blog("warn", "proxy", "closed a connection from %s: %s", p->peer, why);
	close(p->fd);
	pending_free(p);
}

/* Admit fd under client (NULL: the peer) and give it to the vhost. */
static void
adopt(int fd, const char *peer, const char *client)
{
	if (limits_admit(peer, client))
	{
		close(fd);
		return;
	}
	if (!lws_adopt_descriptor_vhost(srv.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL,
									(lws_sock_file_fd_type) {.sockfd = fd}, NULL, NULL))
		blog("warn", "proxy", "lws did not adopt a connection from %s", client ? client : peer);
	/* lws closed the socket if it failed; either way no other wsi is this one */
	limits_admit_cancel();
}

static void
header_done(struct pending *p)
{
	int			fd = p->fd;
	char		peer[INET6_ADDRSTRLEN], client[INET6_ADDRSTRLEN];
	bool		named = p->hdr.family != 0;

	snprintf(peer, sizeof(peer), "%s", p->peer);
	snprintf(client, sizeof(client), "%s", p->hdr.addr);
	if (srv.cfg.verbose >= 2)
		blog("debug", "proxy", "PROXY v%d from %s: client %s", p->hdr.version, peer,
			 named ? client : "(the proxy's own)");
	srv.m.proxy_headers++;
	pending_free(p);
	adopt(fd, peer, named ? client : NULL);
}

static void
pending_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pending *p = (struct pending *) w;
	ssize_t		n;
	int			r;

	if (p->skip)
	{
		uint8_t		scratch[512];

		n = recv(p->fd, scratch, p->skip < sizeof(scratch) ? p->skip : sizeof(scratch), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
		{
			refuse(p, PROXY_R_CLOSED, "closed inside its PROXY header");
			return;
		}
		if ((p->skip -= (size_t) n) == 0)
			header_done(p);
		return;
	}
	/* look without taking: what follows the header stays for lws */
	n = recv(p->fd, p->buf + p->have, sizeof(p->buf) - p->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
	{
		refuse(p, PROXY_R_CLOSED, p->have ? "closed inside its PROXY header"
			   : "closed before sending a PROXY header");
		return;
	}
	r = proxy_parse(p->buf, p->have + (size_t) n, &p->hdr);
	if (r == PROXY_BAD)
	{
		refuse(p, p->have == 0 && !strcmp(p->hdr.error, "no PROXY header") ? PROXY_R_MISSING
			   : PROXY_R_MALFORMED, p->hdr.error);
		return;
	}
	if (r == PROXY_MORE)
	{
		/* all of it is header: take it */
		if (p->have + (size_t) n >= sizeof(p->buf))
		{
			refuse(p, PROXY_R_MALFORMED, "PROXY header too long");
			return;
		}
		if (recv(p->fd, p->buf + p->have, (size_t) n, 0) != n)
		{
			refuse(p, PROXY_R_CLOSED, "PROXY header unreadable");
			return;
		}
		p->have += (size_t) n;
		return;
	}
	/* decided: take what of the header was peeked; the rest (v2 TLVs) is skipped */
	{
		size_t		seen = p->have + (size_t) n;
		size_t		take = (p->hdr.total < seen ? p->hdr.total : seen) - p->have;

		if (take && recv(p->fd, p->buf + p->have, take, 0) != (ssize_t) take)
		{
			refuse(p, PROXY_R_CLOSED, "PROXY header unreadable");
			return;
		}
		p->have += take;
		p->skip = p->hdr.total - p->have;
	}
	if (!p->skip)
		header_done(p);
}

static void
pending_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pending *p = (struct pending *) ((char *) w - offsetof(struct pending, timer));

	refuse(p, PROXY_R_TIMEOUT, p->have ? "PROXY header not complete in time"
		   : "no PROXY header in time");
}

static void
listen_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	for (int i = 0; i < 64; i++)
	{
		struct sockaddr_storage ss;
		socklen_t	sl = sizeof(ss);
		char		peer[INET6_ADDRSTRLEN];
		struct pending *p;
		int			fd = accept4(listen_fd, (struct sockaddr *) &ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
		{
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				blog("warn", "proxy", "accept: %s", strerror(errno));
			return;
		}
		limits_sockaddr_str(&ss, peer, sizeof(peer));
		if (!limits_is_trusted(peer))
		{
			adopt(fd, peer, NULL);	/* a direct client: no header expected */
			continue;
		}
		if (npending >= MAX_PENDING || !(p = calloc(1, sizeof(*p))))
		{
			srv.m.proxy_refused[PROXY_R_MALFORMED]++;
			blog("warn", "proxy", "closed a connection from %s: %d headers already pending", peer, npending);
			close(fd);
			continue;
		}
		p->fd = fd;
		snprintf(p->peer, sizeof(p->peer), "%s", peer);
		p->next = pendings;
		if (pendings)
			pendings->prev = p;
		pendings = p;
		npending++;
		ev_io_init(&p->io, pending_read, fd, EV_READ);
		ev_io_start(srv.loop, &p->io);
		ev_timer_init(&p->timer, pending_timeout, srv.cfg.proxy_protocol_timeout_ms / 1000.0, 0);
		ev_timer_start(srv.loop, &p->timer);
	}
}

/* Listen on host:port (an IPv4 or IPv6 address); -1 with a log line. */
int
proxy_listen_start(const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t	sl;
	int			one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
	{
		ss.ss_family = AF_INET;
		((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) port);
		sl = sizeof(struct sockaddr_in);
	}
	else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
	{
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) port);
		sl = sizeof(struct sockaddr_in6);
	}
	else
	{
		blog("error", "startup", "--proxy-protocol: --listen host \"%s\" is not an IPv4 or IPv6 address", host);
		return -1;
	}
	listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 ||
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		bind(listen_fd, (struct sockaddr *) &ss, sl) || listen(listen_fd, 512))
	{
		blog("error", "startup", "cannot listen on %s:%d: %s", host, port, strerror(errno));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		return -1;
	}
	ev_io_init(&listen_io, listen_cb, listen_fd, EV_READ);
	ev_io_start(srv.loop, &listen_io);
	return 0;
}

void
proxy_listen_stop(void)
{
	if (listen_fd < 0)
		return;
	ev_io_stop(srv.loop, &listen_io);
	close(listen_fd);
	listen_fd = -1;
	while (pendings)
	{
		close(pendings->fd);
		pending_free(pendings);
	}
}
