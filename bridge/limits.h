/*
 * limits.h - what an anonymous peer may cost (limits.c): connections
 * counted per address and in all, a deadline for each request and
 * handshake, refused credentials limited per address, and the client
 * address behind trusted proxies.
 */
#ifndef PANKHA_LIMITS_H
#define PANKHA_LIMITS_H

#include "server.h"

/* accepted connections allowed past --max-connections, for probes and the API */
#define LIMITS_HTTP_ROOM 128

int			limits_init(void);
void		limits_shutdown(void);
int			limits_set_trusted(const char *list);
void		limits_client_addr(struct lws *wsi, char *out, size_t len);
int			limits_filter_network(void *in);
void		limits_wsi_create(struct lws *wsi);
void		limits_wsi_destroy(struct lws *wsi);
void		limits_upgraded(struct lws *wsi);
void		limits_request_done(struct lws *wsi);
int			limits_http_connections(void);
bool		limits_auth_blocked(const char *addr);
void		limits_auth_failed(const char *addr);
bool		limits_metrics_allowed(const char *token);

#endif							/* PANKHA_LIMITS_H */
