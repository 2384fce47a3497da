/*
 * openapi.c - the OpenAPI 3.1 document of the HTTP API, built from the
 * route table itself, so that a route cannot be served without being
 * described (GET /api/v1/openapi.json).
 *
 * Each route gives its path (the {params} become path parameters), its
 * method, the bearer security of its role (x-pankha-role names the
 * least one), and the schema of its 200 body: by the extension function
 * of an API_ROUTE row (a listing, a command, or an object), else by the
 * row's pattern.  Every error answer is the one Error schema.
 */
#include "openapi.h"

#include <string.h>

#define LISTING "{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\"]," \
	"\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\"}}," \
	"\"next_cursor\":{\"type\":[\"string\",\"null\"]}}}"
#define COMMAND "{\"type\":\"object\",\"required\":[\"command_id\",\"agent_id\",\"command_type\",\"status\"]," \
	"\"properties\":{\"command_id\":{\"type\":\"string\"},\"agent_id\":{\"type\":\"string\"}," \
	"\"command_type\":{\"type\":\"string\"},\"status\":{\"enum\":[\"queued\",\"sent\",\"acked\"," \
	"\"failed\",\"expired\",\"dead\"]}}}"
#define OBJECT "{\"type\":\"object\"}"

/* The 200 body of each extension function that is not a plain object. */
static const struct
{
	const char *name;			/* function, or "METHOD pattern" */
	const char *schema;
}			schemas[] = {
	{"api_fleet", "{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\",\"total\"],"
	"\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":"
	"[\"agent_id\",\"status\"],\"properties\":{\"agent_id\":{\"type\":\"string\"}}}},"
	"\"next_cursor\":{\"type\":[\"string\",\"null\"]},\"total\":{\"type\":\"integer\"}}}"},
	{"api_agent", "{\"type\":\"object\",\"required\":[\"agent_id\"],\"properties\":"
	"{\"agent_id\":{\"type\":\"string\"}}}"},
	{"api_commands", LISTING}, {"api_profiles", LISTING}, {"api_groups", LISTING},
	{"api_alert_rules", LISTING}, {"api_alerts", LISTING}, {"api_alert_silences", LISTING},
	{"api_audit", LISTING}, {"api_tokens", LISTING}, {"api_fleet_report", LISTING},
	{"api_command", COMMAND}, {"api_send_command", COMMAND},
	{"GET /healthz", "{\"type\":\"object\",\"required\":[\"status\"]}"},
	{"GET /readyz", "{\"type\":\"object\",\"required\":[\"ready\"]}"},
	{"GET /metrics", NULL},		/* text/plain */
	{"GET /api/v1/agents", "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"agent_id\"]}}"},
	{"api_history", "{\"type\":\"object\",\"required\":[\"agent_id\",\"from\",\"to\",\"series\"],"
	"\"properties\":{\"agent_id\":{\"type\":\"string\"},\"resolution_seconds\":{\"type\":[\"number\",\"null\"]},"
	"\"series\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"array\",\"items\":"
	"{\"type\":\"object\",\"required\":[\"t\",\"min\",\"max\",\"avg\",\"samples\"]}}}}}"},
	{"POST /api/v1/agents/register", "{\"type\":\"object\",\"required\":[\"agent_id\",\"token\"]}"},
};

static const char *
schema_for(const struct http_route *r)
{
	char		key[300];

	snprintf(key, sizeof(key), "%s %s", r->method, r->pattern);
	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
		if ((r->function && !strcmp(schemas[i].name, r->function)) || !strcmp(schemas[i].name, key))
			return schemas[i].schema;
	return OBJECT;
}

static void
add_response(cJSON *responses, const char *status, const char *description, const char *ctype,
			 cJSON *schema)
{
	cJSON	   *resp = cJSON_AddObjectToObject(responses, status);
	cJSON	   *media;

	cJSON_AddStringToObject(resp, "description", description);
	media = cJSON_AddObjectToObject(cJSON_AddObjectToObject(resp, "content"), ctype);
	if (schema)
		cJSON_AddItemToObject(media, "schema", schema);
}

static cJSON *
error_ref(void)
{
	cJSON	   *ref = cJSON_CreateObject();

	cJSON_AddStringToObject(ref, "$ref", "#/components/schemas/Error");
	return ref;
}

/* One operation of the document. */
static cJSON *
operation(const struct http_route *r)
{
	cJSON	   *op = cJSON_CreateObject();
	cJSON	   *params = cJSON_AddArrayToObject(op, "parameters");
	cJSON	   *responses;
	const char *schema = schema_for(r);
	char		opid[160];

	snprintf(opid, sizeof(opid), "%s%s%s", r->function ? r->function : r->method,
			 r->function ? "_" : "", r->function ? r->method : r->pattern);
	cJSON_AddStringToObject(op, "operationId", opid);
	if (r->function)
		cJSON_AddStringToObject(op, "summary", r->function);
	cJSON_AddStringToObject(op, "x-pankha-role",
							r->min_role == ROLE_PUBLIC ? "public" :
							r->min_role == ROLE_AGENT ? "agent" : role_name(r->min_role));
	if (r->min_role != ROLE_PUBLIC)
		cJSON_AddItemToObject(op, "security",
							  cJSON_Parse("[{\"bearer\":[]}]"));
	for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{'))
	{
		cJSON	   *param = cJSON_CreateObject();
		size_t		n = strcspn(p + 1, "}");
		char		name[64];

		snprintf(name, sizeof(name), "%.*s", (int) (n < sizeof(name) ? n : sizeof(name) - 1), p + 1);
		cJSON_AddStringToObject(param, "name", name);
		cJSON_AddStringToObject(param, "in", "path");
		cJSON_AddTrueToObject(param, "required");
		cJSON_AddItemToObject(param, "schema", cJSON_Parse("{\"type\":\"string\"}"));
		cJSON_AddItemToArray(params, param);
	}
	if (!strcmp(r->method, "POST") || !strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH"))
		cJSON_AddItemToObject(op, "requestBody",
							  cJSON_Parse("{\"content\":{\"application/json\":{\"schema\":{\"type\":\"object\"}}}}"));
	responses = cJSON_AddObjectToObject(op, "responses");
	if (schema)
		add_response(responses, "200", "the answer", "application/json", cJSON_Parse(schema));
	else
		add_response(responses, "200", "the answer", "text/plain", NULL);
	add_response(responses, "default", "an error", "application/json", error_ref());
	return op;
}

/* The document, as JSON text (malloc'd), or NULL without memory. */
char *
openapi_document(const struct http_route *routes, size_t n)
{
	cJSON	   *doc = cJSON_CreateObject();
	cJSON	   *info, *paths, *components;
	char	   *text;

	cJSON_AddStringToObject(doc, "openapi", "3.1.0");
	info = cJSON_AddObjectToObject(doc, "info");
	cJSON_AddStringToObject(info, "title", "pankha-bridge");
	cJSON_AddStringToObject(info, "version", BRIDGE_VERSION);
	paths = cJSON_AddObjectToObject(doc, "paths");
	for (size_t i = 0; i < n; i++)
	{
		cJSON	   *item = cJSON_GetObjectItemCaseSensitive(paths, routes[i].pattern);
		char		method[8];
		size_t		k;

		if (!item)
			item = cJSON_AddObjectToObject(paths, routes[i].pattern);
		for (k = 0; routes[i].method[k] && k < sizeof(method) - 1; k++)
			method[k] = (char) (routes[i].method[k] | 0x20);	/* lower case */
		method[k] = '\0';
		if (!cJSON_GetObjectItemCaseSensitive(item, method))
			cJSON_AddItemToObject(item, method, operation(&routes[i]));
	}
	components = cJSON_AddObjectToObject(doc, "components");
	cJSON_AddItemToObject(components, "securitySchemes",
						  cJSON_Parse("{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}}"));
	cJSON_AddItemToObject(cJSON_AddObjectToObject(components, "schemas"), "Error",
						  cJSON_Parse("{\"type\":\"object\",\"required\":[\"error\"],\"properties\":"
									  "{\"error\":{\"type\":\"object\",\"required\":[\"code\",\"message\",\"field\"],"
									  "\"properties\":{\"code\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"},"
									  "\"field\":{\"type\":[\"string\",\"null\"]}}}}}"));
	text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return text;
}
