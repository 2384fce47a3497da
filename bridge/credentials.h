/*
 * credentials.h - the bridge's copy of the live agent and dashboard
 * tokens (credentials.c): handshakes are checked against it, and changes
 * are published to the modules that subscribe.
 */
#ifndef PANKHA_CREDENTIALS_H
#define PANKHA_CREDENTIALS_H

#include "server.h"

#define CRED_DIGEST_LEN 32	/* SHA-256 of a token */
#define CRED_SELECTOR_LEN 16	/* token characters after the kind prefix */
#define CRED_AGENT 'a'
#define CRED_UI 'u'

/* The answer to a handshake's credentials. */
enum cred_verdict
{
	CRED_OK,					/* accept */
	CRED_REFUSED,				/* HTTP 401; recorded as auth.failed */
	CRED_UNAVAILABLE			/* HTTP 503: database down or credentials not loaded */
};

/* What an accepted token grants, kept by the connection. */
struct cred_grant
{
	char		selector[CRED_SELECTOR_LEN + 1];	/* which token let it in */
	char		owner[65];		/* agent id or dashboard user name */
	char		role[12];		/* dashboard role */
	unsigned char digest[CRED_DIGEST_LEN];	/* of the token presented (L9) */
};

enum cred_verdict creds_check(char kind, const char *agent_id, const char *token,
							  const char *peer, struct cred_grant *grant);
bool		creds_ready(void);
bool		creds_still_valid(char kind, const char *selector, const unsigned char *digest,
							  const char *owner, const char *role);
/*
 * A credential that let connections in changed or went away (selector
 * NULL: the copy was reloaded whole and any may have).  Subscribers
 * recheck the connections of their kind with creds_still_valid().
 */
typedef void (*creds_changed_fn) (char kind, const char *owner, const char *selector);
int			creds_subscribe(creds_changed_fn fn);
int			creds_init(void);
void		creds_flush_reports(void);
void		creds_shutdown(void);

size_t		creds_count(void);

#endif							/* PANKHA_CREDENTIALS_H */
