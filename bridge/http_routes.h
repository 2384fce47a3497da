/*
 * http_routes.h - the route table of the HTTP API (http_routes.c), handed
 * to http_api.c by main.c.
 */
#ifndef PANKHA_HTTP_ROUTES_H
#define PANKHA_HTTP_ROUTES_H

#include "http_api.h"

extern const struct http_route http_routes[];
extern const size_t http_nroutes;

#endif							/* PANKHA_HTTP_ROUTES_H */
