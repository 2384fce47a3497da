/*
 * pk_cjson.h
 *	  Feed a cJSON document into the plain-C frame model of validate.h, so
 *	  the validation rules run outside the server (unit tests, fuzzing).
 */
#ifndef PK_CJSON_H
#define PK_CJSON_H

#include <cjson/cJSON.h>

#include "validate.h"

/* Build json from a parsed cJSON tree; strings point into the tree. */
extern bool pk_json_from_cjson(const cJSON *item, PkJson *json);

#endif
