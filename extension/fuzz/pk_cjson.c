/*
 * pk_cjson.c
 *	  cJSON tree -> PkJson events, the out-of-server twin of ingest.c's
 *	  PostgreSQL-parser adaptor.
 */
#include "pk_cjson.h"

#include <stdlib.h>
#include <string.h>

/* Emit the events of one value, depth first. */
static void
emit(const cJSON *item, PkJson *json)
{
	if (item->string)
		pk_json_key(json, item->string, (int) strlen(item->string));
	if (cJSON_IsObject(item) || cJSON_IsArray(item))
	{
		pk_json_begin(json, cJSON_IsObject(item) ? PK_JSON_OBJECT : PK_JSON_ARRAY);
		for (const cJSON *child = item->child; child; child = child->next)
			emit(child, json);
		pk_json_end(json);
	}
	else if (cJSON_IsString(item))
		pk_json_scalar(json, PK_JSON_STRING, item->valuestring,
					   (int) strlen(item->valuestring), 0);
	else if (cJSON_IsNumber(item))
		pk_json_scalar(json, PK_JSON_NUMBER, NULL, 0, item->valuedouble);
	else if (cJSON_IsBool(item))
		pk_json_scalar(json, PK_JSON_BOOL, NULL, 0, cJSON_IsTrue(item));
	else
		pk_json_scalar(json, PK_JSON_NULL, NULL, 0, 0);
}

bool
pk_json_from_cjson(const cJSON *item, PkJson *json)
{
	pk_json_init(json, realloc);
	emit(item, json);
	return !json->failed && json->count > 0;
}
