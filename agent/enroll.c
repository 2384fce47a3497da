/*
 * enroll.c - enrollment: POST /api/v1/agents/register with the enrollment
 * key, then store the token it answers in a file only its owner can read,
 * and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "link.h"

static void register_done(struct http_req *r, bool ok);

/* Store the token from a register response. */
static void
register_done(struct http_req *r, bool ok)
{
	struct pk_link *l = r->link;
	struct pk_agent *a = l->a;
	cJSON	   *resp = ok ? cJSON_ParseWithLength(r->resp ? r->resp : "", r->resp_len) : NULL;
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(resp, "token");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(resp, "agent_id");
	int			fd;
	size_t		tl;

	l->stopping = true;
	l->exit_code = 1;
	lws_cancel_service(l->ctx);
	if (!ok || (r->status != 200 && r->status != 201))
	{
		pk_log(PK_LOG_ERROR, "enrollment failed: %s%d %.200s", ok ? "HTTP " : "no answer, status ",
			   r->status, r->resp ? r->resp : "");
		cJSON_Delete(resp);
		return;
	}
	if (!cJSON_IsString(tok) || !tok->valuestring[0])
	{
		pk_log(PK_LOG_ERROR, "enrollment answer has no token");
		cJSON_Delete(resp);
		return;
	}
	/* Only the owner (root for the system service) may read the token. */
	fd = open(a->token_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT && strrchr(a->token_file, '/'))
	{
		/* First enrollment on this host: create /etc/pankha (or the like). */
		char	   *dir = strdup(a->token_file);

		if (dir)
		{
			*strrchr(dir, '/') = '\0';
			if (*dir && mkdir(dir, 0755) == 0)
				fd = open(a->token_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
			free(dir);
		}
	}
	tl = strlen(tok->valuestring);
	if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, tok->valuestring, tl) != (ssize_t) tl ||
		write(fd, "\n", 1) != 1 || fsync(fd) != 0)
	{
		pk_log(PK_LOG_ERROR, "cannot write the token to %s: %s", a->token_file, strerror(errno));
		if (fd >= 0)
			close(fd);
		cJSON_Delete(resp);
		return;
	}
	close(fd);
	pk_log(PK_LOG_INFO, "enrolled as %s; token stored in %s",
		   cJSON_IsString(id) ? id->valuestring : a->agent_id, a->token_file);
	cJSON_Delete(resp);
	l->exit_code = 0;
}

/* Register with --enroll/--enrollment-key and store the token. */
int
pk_link_enroll(struct pk_agent *a)
{
	struct pk_link *l = a->link;
	struct http_req *r = &l->reg;
	cJSON	   *body = cJSON_CreateObject(),
			   *caps;
	char		host[256] = "";
	size_t		n;

	gethostname(host, sizeof(host) - 1);
	caps = cJSON_AddObjectToObject(body, "capabilities");
	if (!body || !caps || !cJSON_AddStringToObject(body, "agent_id", a->agent_id) ||
		!cJSON_AddStringToObject(body, "name", a->agent_name ? a->agent_name : a->agent_id) ||
		!cJSON_AddStringToObject(body, "hostname", host) ||
		!cJSON_AddNumberToObject(caps, "sensors", a->hw.nsensors) ||
		!cJSON_AddNumberToObject(caps, "fans", a->hw.nfans) ||
		!cJSON_AddBoolToObject(caps, "fan_control", true) ||
		!cJSON_AddStringToObject(caps, "agent_version", PK_AGENT_VERSION))
	{
		cJSON_Delete(body);
		return -1;
	}
	r->body = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	n = strlen(a->enrollment_key) + 8;
	r->auth = malloc(n);
	n = strlen(l->http_base) + 32;
	r->path = malloc(n);
	if (!r->body || !r->auth || !r->path)
		return -1;
	snprintf(r->auth, strlen(a->enrollment_key) + 8, "Bearer %s", a->enrollment_key);
	snprintf(r->path, n, "%s/api/v1/agents/register", l->http_base);
	r->body_len = strlen(r->body);
	r->done = register_done;
	l->exit_code = 1;
	if (http_start(l, r) != 0)
	{
		pk_log(PK_LOG_ERROR, "cannot connect to %s:%d", l->host, l->port);
		return -1;
	}
	while (!l->stopping && !link_stop_signal)
		if (lws_service(l->ctx, 0) < 0)
			break;
	return l->exit_code;
}
