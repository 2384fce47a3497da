/*
 * proxy.h - the PROXY protocol header (HAProxy's, versions 1 and 2) that a
 * load balancer sends ahead of a connection's own bytes (proxy.c), and the
 * listener that reads it before lws sees the connection (proxy_listen.c).
 */
#ifndef PANKHA_PROXY_H
#define PANKHA_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* what a v2 header may hold ahead of its TLVs: the 16-byte head and two IPv6 addresses and ports */
#define PROXY_V1_MAX 107
#define PROXY_V2_HEAD 16
#define PROXY_BUF 232

/* proxy_parse's results besides a length */
#define PROXY_MORE 0			/* a prefix of a header: read on */
#define PROXY_BAD (-1)			/* not a header, or a malformed one (why: error) */

struct proxy_header
{
	int			version;		/* 1 or 2 */
	size_t		total;			/* bytes of the whole header, TLVs of v2 included */
	int			family;			/* AF_INET, AF_INET6; 0: LOCAL or UNKNOWN, use the socket's peer */
	char		addr[46];		/* the client's address (INET6_ADDRSTRLEN), family set */
	int			port;			/* and its port */
	const char *error;			/* PROXY_BAD: why */
};

/* why a trusted connection was closed (srv.m.proxy_refused) */
enum
{
	PROXY_R_MISSING,			/* its first bytes are no header */
	PROXY_R_MALFORMED,			/* a header, but broken, too long or unsupported */
	PROXY_R_TIMEOUT,			/* not whole within --proxy-protocol-timeout */
	PROXY_R_CLOSED,				/* closed before its header ended */
};

int			proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h);

/* proxy_listen.c: the bridge's own listening socket for --proxy-protocol */
int			proxy_listen_start(const char *host, int port);
void		proxy_listen_stop(void);

#endif							/* PANKHA_PROXY_H */
