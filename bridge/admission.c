/*
 * admission.c - what an anonymous peer may cost the bridge (H2, M5, L11 of
 * the 2026-12 review): every accepted TCP connection is counted, per
 * address and in all, before lws gives it a header table; each one has a
 * deadline for its request (or its WebSocket handshake) as a whole, which
 * trickling bytes do not push back; refused credentials are counted per
 * address and past --auth-fail-limit-ip the address is answered 429
 * without a check; and the client address is the connection's peer, or
 * what X-Forwarded-For says when that peer is one of --trusted-proxy;
 * with --proxy-protocol, what the PROXY header of a trusted proxy's
 * connection said comes first (proxy_listen.c).
 *
 * lws hands every connection to the vhost's first protocol (http.c's
 * callback) with LWS_CALLBACK_FILTER_NETWORK_CONNECTION (the accepted
 * socket's address, before any wsi exists), then LWS_CALLBACK_WSI_CREATE
 * for its wsi in the same call, and LWS_CALLBACK_WSI_DESTROY when it goes;
 * the connections are kept by wsi between the two.  lws 4.1.6 re-arms its
 * own content timeout after every body chunk, so the deadline is kept here:
 * connections still in their request are in one list in deadline order
 * (each deadline is now + --request-timeout when set, so appending keeps
 * it sorted), and a sweep twice a second ends those past it with
 * lws_set_timeout(LWS_TO_KILL_ASYNC).
 */
#include "admission.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/socket.h>

#define ADDR_BUCKETS 4096
#define CONN_BUCKETS 16384
#define MAX_TRUSTED 32
#define SWEEP_US (500 * LWS_US_PER_MS)

/* Connections of one address. */
struct addr_count
{
	struct addr_count *next;
	int			count;
	char		addr[INET6_ADDRSTRLEN];
};

/* One accepted connection, by wsi. */
struct conn
{
	struct conn *hash_next;
	struct conn *prev, *next;	/* in the deadline list while in a request */
	struct lws *wsi;
	struct addr_count *addr;	/* NULL for a trusted proxy */
	lws_usec_t	deadline;
	bool		pending;		/* in the deadline list */
	bool		upgraded;		/* a WebSocket now */
	char		client[INET6_ADDRSTRLEN];	/* from a PROXY header ("": the peer's) */
};

/* An address or network of --trusted-proxy. */
struct net
{
	int			family;
	unsigned char bytes[16];
	int			prefix;
};

static struct conn *conn_find(struct lws *wsi);

static struct addr_count *addrs[ADDR_BUCKETS];
static struct conn *conns[CONN_BUCKETS];
static struct conn *head, *tail;	/* the deadline list, earliest first */
static int	total;				/* accepted connections open */
static int	websockets;			/* of those, upgraded */
static struct net trusted[MAX_TRUSTED];
static int	ntrusted;
static bool just_admitted;		/* FILTER_NETWORK_CONNECTION said yes; WSI_CREATE next */
static char admitted_addr[INET6_ADDRSTRLEN];
static bool admitted_trusted;
static char admitted_client[INET6_ADDRSTRLEN];	/* a PROXY header's address, or "" */
static struct btimer sweep_timer;
static lws_usec_t minute_started;

/* ---------------------------------------------------------------- addresses */

static unsigned int
hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	unsigned int h = 2166136261u;

	while (n--)
		h = (h ^ *s++) * 16777619u;
	return h;
}

/* Parse an address (no brackets, no port) into a net of full length. */
static bool
parse_addr(const char *s, struct net *n)
{
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, s, n->bytes) == 1)
	{
		n->family = AF_INET;
		n->prefix = 32;
		return true;
	}
	if (inet_pton(AF_INET6, s, n->bytes) == 1)
	{
		n->family = AF_INET6;
		n->prefix = 128;
		return true;
	}
	return false;
}

static bool
net_contains(const struct net *net, const struct net *a)
{
	int			full = net->prefix / 8, rest = net->prefix % 8;

	if (net->family != a->family || memcmp(net->bytes, a->bytes, full))
		return false;
	return rest == 0 ||
		((net->bytes[full] ^ a->bytes[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static bool
is_trusted(const char *addr)
{
	struct net a;

	if (!ntrusted || !parse_addr(addr, &a))
		return false;
	for (int i = 0; i < ntrusted; i++)
		if (net_contains(&trusted[i], &a))
			return true;
	return false;
}

/* --trusted-proxy: addresses and CIDR networks, comma-separated; -1 with a message. */
int
limits_set_trusted(const char *list)
{
	ntrusted = 0;
	while (list && *list)
	{
		size_t		len = strcspn(list, ", ");
		char		item[64], *slash;
		struct net *n = &trusted[ntrusted];

		if (len)
		{
			if (len >= sizeof(item) || ntrusted >= MAX_TRUSTED)
			{
				fprintf(stderr, "pankha-bridge: --trusted-proxy: \"%.*s\": too long or more than %d entries\n",
						(int) len, list, MAX_TRUSTED);
				return -1;
			}
			memcpy(item, list, len);
			item[len] = '\0';
			slash = strchr(item, '/');
			if (slash)
				*slash = '\0';
			if (!parse_addr(item, n))
			{
				fprintf(stderr, "pankha-bridge: --trusted-proxy: \"%.*s\" is not an address or CIDR network\n",
						(int) len, list);
				return -1;
			}
			if (slash)
			{
				char	   *end;
				long		p = strtol(slash + 1, &end, 10);

				if (end == slash + 1 || *end || p < 0 || p > n->prefix)
				{
					fprintf(stderr, "pankha-bridge: --trusted-proxy: \"%.*s\": bad prefix length\n",
							(int) len, list);
					return -1;
				}
				n->prefix = (int) p;
			}
			ntrusted++;
		}
		list += len;
		list += strspn(list, ", ");
	}
	return 0;
}

/*
 * The client's address: the peer's, or when the peer is a trusted proxy,
 * the last X-Forwarded-For hop that is not itself a trusted proxy.
 */
void
limits_client_addr(struct lws *wsi, char *out, size_t len)
{
	char		xff[512];
	struct conn *c = conn_find(wsi);
	int			n;

	if (c && c->client[0])
		snprintf(out, len, "%s", c->client);	/* its PROXY header's (proxy_listen.c) */
	else
		lws_get_peer_simple(wsi, out, len);
	if (!ntrusted || !is_trusted(out))
		return;
	n = lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR);
	if (n <= 0 || n >= (int) sizeof(xff) ||
		lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) <= 0)
		return;
	/* from the right: each hop appends the address it heard from */
	for (char *end = xff + strlen(xff); end > xff;)
	{
		char	   *start = end, hop[INET6_ADDRSTRLEN + 1];
		struct net a;
		size_t		hl;

		while (start > xff && start[-1] != ',')
			start--;
		hl = (size_t) (end - start);
		while (hl && (*start == ' ' || *start == '\t'))
			start++, hl--;
		while (hl && (start[hl - 1] == ' ' || start[hl - 1] == '\t'))
			hl--;
		if (!hl || hl >= sizeof(hop))
			return;				/* not an address: keep what we have */
		memcpy(hop, start, hl);
		hop[hl] = '\0';
		if (!parse_addr(hop, &a))
			return;
		/* normalized, as lws_get_peer_simple writes addresses */
		inet_ntop(a.family, a.bytes, out, (socklen_t) len);
		if (!is_trusted(out))
			return;
		end = start;
		while (end > xff && (end[-1] == ',' || end[-1] == ' '))
			end--;
	}
}

static struct addr_count *
addr_get(const char *addr, bool create)
{
	unsigned int h = hash_bytes(addr, strlen(addr)) % ADDR_BUCKETS;
	struct addr_count *a;

	for (a = addrs[h]; a; a = a->next)
		if (!strcmp(a->addr, addr))
			return a;
	if (!create || !(a = calloc(1, sizeof(*a))))
		return NULL;
	snprintf(a->addr, sizeof(a->addr), "%s", addr);
	a->next = addrs[h];
	addrs[h] = a;
	return a;
}

static void
addr_put(struct addr_count *a)
{
	struct addr_count **p;

	if (--a->count > 0)
		return;
	for (p = &addrs[hash_bytes(a->addr, strlen(a->addr)) % ADDR_BUCKETS]; *p; p = &(*p)->next)
		if (*p == a)
		{
			*p = a->next;
			free(a);
			return;
		}
}

/* ---------------------------------------------------------------- connections */

static unsigned int
hash_wsi(const struct lws *wsi)
{
	return hash_bytes(&wsi, sizeof(wsi)) % CONN_BUCKETS;
}

static struct conn *
conn_find(struct lws *wsi)
{
	for (struct conn *c = conns[hash_wsi(wsi)]; c; c = c->hash_next)
		if (c->wsi == wsi)
			return c;
	return NULL;
}

static void
unlink_pending(struct conn *c)
{
	if (!c->pending)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		tail = c->prev;
	c->prev = c->next = NULL;
	c->pending = false;
}

/* (Re)start the deadline of c's request: at the end of the list. */
static void
arm(struct conn *c, lws_usec_t us)
{
	unlink_pending(c);
	if (srv.cfg.request_timeout_s <= 0)
		return;
	c->deadline = now_us() + us;
	c->prev = tail;
	if (tail)
		tail->next = c;
	else
		head = c;
	tail = c;
	c->pending = true;
}

/*
 * LWS_CALLBACK_FILTER_NETWORK_CONNECTION: admit a connection or not
 * (non-zero: lws closes it).  Past --max-connections (plus room for the
 * probes and the API) or --max-connections-ip, no.
 */
int
limits_filter_network(void *in)
{
	const struct lws_filter_network_conn_args *f = in;
	char		addr[INET6_ADDRSTRLEN] = "";

	just_admitted = false;
	if (!f)
		return 0;
	limits_sockaddr_str(&f->cli_addr, addr, sizeof(addr));
	return limits_admit(addr, NULL);
}

/* A socket address as lws_get_peer_simple says it ("" if neither IPv4 nor IPv6). */
void
limits_sockaddr_str(const struct sockaddr_storage *ss, char *addr, size_t len)
{
	addr[0] = '\0';
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) ss)->sin_addr, addr, (socklen_t) len);
	else if (ss->ss_family == AF_INET6)
	{
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *) ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(AF_INET, &a6->s6_addr[12], addr, (socklen_t) len);
		else
			inet_ntop(AF_INET6, a6, addr, (socklen_t) len);
	}
}

/*
 * Admit a connection from addr (0) or not (1: close it).  client is the
 * address its PROXY header named (NULL: none, the peer is the client):
 * that is the address counted, limited and reported.  The next
 * LWS_CALLBACK_WSI_CREATE takes the connection over; limits_admit_cancel()
 * if no wsi came of it.
 */
int
limits_admit(const char *peer, const char *client)
{
	const char *addr = client && client[0] ? client : peer;
	struct addr_count *a;

	just_admitted = false;
	if (total >= srv.cfg.max_connections + LIMITS_HTTP_ROOM)
	{
		srv.m.connections_refused_total++;
		return 1;
	}
	admitted_trusted = is_trusted(addr);
	if (!admitted_trusted && srv.cfg.max_connections_ip > 0)
	{
		a = addr_get(addr, false);
		if (a && a->count >= srv.cfg.max_connections_ip)
		{
			srv.m.connections_refused_ip++;
			return 1;
		}
	}
	snprintf(admitted_addr, sizeof(admitted_addr), "%s", addr);
	snprintf(admitted_client, sizeof(admitted_client), "%s", client ? client : "");
	just_admitted = true;
	return 0;
}

void
limits_admit_cancel(void)
{
	just_admitted = false;
}

/* LWS_CALLBACK_WSI_CREATE: the wsi of the connection just admitted (if any). */
void
limits_wsi_create(struct lws *wsi)
{
	struct conn *c;
	unsigned int h;

	if (!just_admitted)
		return;					/* a database socket, or a client of ours */
	just_admitted = false;
	if (!(c = calloc(1, sizeof(*c))))
		return;
	if (!admitted_trusted && !(c->addr = addr_get(admitted_addr, true)))
	{
		free(c);
		return;
	}
	if (c->addr)
		c->addr->count++;
	c->wsi = wsi;
	snprintf(c->client, sizeof(c->client), "%s", admitted_client);
	h = hash_wsi(wsi);
	c->hash_next = conns[h];
	conns[h] = c;
	total++;
	arm(c, (lws_usec_t) srv.cfg.request_timeout_s * LWS_US_PER_SEC);
}

/* LWS_CALLBACK_WSI_DESTROY. */
void
limits_wsi_destroy(struct lws *wsi)
{
	struct conn **p;

	for (p = &conns[hash_wsi(wsi)]; *p; p = &(*p)->hash_next)
		if ((*p)->wsi == wsi)
		{
			struct conn *c = *p;

			*p = c->hash_next;
			unlink_pending(c);
			if (c->addr)
				addr_put(c->addr);
			if (c->upgraded)
				websockets--;
			total--;
			free(c);
			return;
		}
}

/* The WebSocket handshake completed: no request deadline any more. */
void
limits_upgraded(struct lws *wsi)
{
	struct conn *c = conn_find(wsi);

	if (c && !c->upgraded)
	{
		unlink_pending(c);
		c->upgraded = true;
		websockets++;
	}
}

/* A response went out: the next request on the connection has a new deadline. */
void
limits_request_done(struct lws *wsi)
{
	struct conn *c = conn_find(wsi);

	if (c && !c->upgraded)
		arm(c, (lws_usec_t) srv.cfg.request_timeout_s * LWS_US_PER_SEC);
}

/* Accepted connections that are not WebSockets (HTTP, or handshaking). */
int
limits_http_connections(void)
{
	return total - websockets;
}

/* ---------------------------------------------------------------- refusals */

/* Has addr had --auth-fail-limit-ip refused credentials this minute? */
bool
limits_auth_blocked(const char *addr)
{
	return srv.cfg.auth_fail_limit_ip > 0 &&
		attempts_count("auth-fail", addr) >= (unsigned int) srv.cfg.auth_fail_limit_ip;
}

/* A credential from addr was refused (401). */
void
limits_auth_failed(const char *addr)
{
	if (srv.cfg.auth_fail_limit_ip > 0)
		attempts_allow("auth-fail", addr, srv.cfg.auth_fail_limit_ip);
}

/* Compare a presented token with the --metrics-token in constant time. */
bool
limits_metrics_allowed(const char *token)
{
	size_t		n;

	if (!srv.cfg.metrics_token)
		return true;
	n = strlen(srv.cfg.metrics_token);
	return token && strlen(token) == n && CRYPTO_memcmp(token, srv.cfg.metrics_token, n) == 0;
}

/* ---------------------------------------------------------------- sweep */

static void
sweep_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	now = now_us();

	/* past their deadline: closed; kept in the list in case lws re-arms its own */
	while (head && head->deadline <= now)
	{
		struct conn *c = head;

		srv.m.request_timeouts++;
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, LWS_TO_KILL_ASYNC);
		arm(c, LWS_US_PER_SEC);
	}
	if (now - minute_started >= 60 * LWS_US_PER_SEC)
	{
		minute_started = now;
		attempts_reset();
	}
	timer_schedule(&sweep_timer, sweep_cb, SWEEP_US);
}

/* Start the sweep (after timers_init). */
int
limits_init(void)
{
	minute_started = now_us();
	timer_schedule(&sweep_timer, sweep_cb, SWEEP_US);
	return 0;
}

void
limits_shutdown(void)
{
	timer_cancel(&sweep_timer);
}

/* Is addr one of --trusted-proxy? */
bool
limits_is_trusted(const char *addr)
{
	return is_trusted(addr);
}
