/*
 * openapi.h - the OpenAPI 3.1 document of the HTTP API (openapi.c), made
 * from the route table.
 */
#ifndef PANKHA_OPENAPI_H
#define PANKHA_OPENAPI_H

#include "http_api.h"

char	   *openapi_document(const struct http_route *routes, size_t n);

#endif							/* PANKHA_OPENAPI_H */
