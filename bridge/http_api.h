/*
 * http_api.h - the HTTP side (http_api.c): probes, metrics, agent
 * enrollment and sync, and the dashboard's JSON API.
 */
#ifndef PANKHA_HTTP_API_H
#define PANKHA_HTTP_API_H

#include "server.h"

int			http_callback(struct lws *wsi, enum lws_callback_reasons reason,
						  void *user, void *in, size_t len);

/* The http protocol: the API and probes; per-session data is one pointer. */
#define HTTP_PROTOCOL {"http", http_callback, 64, 0, 0, NULL, 0}

#endif							/* PANKHA_HTTP_API_H */
