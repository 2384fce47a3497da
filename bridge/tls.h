/*
 * tls.h - reloading the vhost's certificate on SIGHUP (tls.c).
 */
#ifndef PANKHA_TLS_H
#define PANKHA_TLS_H

#include "server.h"

void		tls_remember_server_ctx(void *ssl_ctx);
bool		tls_can_reload(void);
int			tls_reload(void);

#endif							/* PANKHA_TLS_H */
