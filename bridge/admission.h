/*
 * admission.h - what an anonymous peer may cost (admission.c): connections
 * counted per address and in all, a deadline for each request and
 * handshake, refused credentials limited per address, and the client
 * address behind trusted proxies.
 */
#ifndef PANKHA_ADMISSION_H
#define PANKHA_ADMISSION_H

#include "server.h"

#include <sys/socket.h>

/* accepted connections allowed past --max-connections, for probes and the API */
#define LIMITS_HTTP_ROOM 128

int			limits_init(void);
void		limits_shutdown(void);
int			limits_set_trusted(const char *list);
void		limits_client_addr(struct lws *wsi, char *out, size_t len);
int			limits_filter_network(void *in);
int			limits_admit(const char *peer, const char *client);
void		limits_admit_cancel(void);
bool		limits_is_trusted(const char *addr);
void		limits_sockaddr_str(const struct sockaddr_storage *ss, char *addr, size_t len);
void		limits_wsi_create(struct lws *wsi);
void		limits_wsi_destroy(struct lws *wsi);
void		limits_upgraded(struct lws *wsi);
void		limits_request_done(struct lws *wsi);
int			limits_http_connections(void);
bool		limits_auth_blocked(const char *addr);
void		limits_auth_failed(const char *addr);
bool		limits_metrics_allowed(const char *token);

#endif							/* PANKHA_ADMISSION_H */
