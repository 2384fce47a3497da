/*
 * main.c - pankha-bridge: options, the lws context, signals and shutdown.
 *
 * One event loop (libev, driven by lws) serves agents (/ws/agent),
 * dashboards (/ws/ui), the HTTP API and the database connections.  SIGTERM stops new connections,
 * commits and acknowledges what is held, closes sockets with 1001 and
 * exits 0.  SIGHUP reopens the log file and reloads the TLS certificate
 * (tls.c).
 */
#include "agent_commands.h"
#include "agent_ws.h"
#include "agents.h"
#include "credentials.h"
#include "db.h"
#include "extversion.h"
#include "http_api.h"
#include "http_routes.h"
#include "ingest_batch.h"
#include "admission.h"
#include "tls.h"
#include "proxy.h"
#include "ui_ws.h"
#include "heartbeat.h"
#include "ws.h"
#include "metrics.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>

struct server srv;


/* One command-line option with its environment variable and default. */
struct option_doc
{
	const char *name;
	int			has_arg;
	const char *env;
	const char *deflt;
	const char *help;
};

static const struct option_doc docs[] = {
	{"db", 1, "PANKHA_DB", "dbname=pankha", "libpq connection string"},
	{"listen", 1, "PANKHA_LISTEN", "127.0.0.1:8080", "HOST:PORT to listen on"},
	{"dashboard", 1, "PANKHA_DASHBOARD", "/usr/local/share/pankha/dashboard", "directory served at / (empty: none)"},
	{"tls-cert", 1, "PANKHA_TLS_CERT", "", "PEM certificate (and chain): serve wss/https; SIGHUP reloads it"},
	{"tls-key", 1, "PANKHA_TLS_KEY", "", "PEM private key for --tls-cert; SIGHUP reloads it"},
	{"bridge-id", 1, "PANKHA_BRIDGE_ID", "HOSTNAME:PORT", "name of this bridge in pankha.connections"},
	{"log-file", 1, "PANKHA_LOG_FILE", "", "append logs here (empty: stderr); SIGHUP reopens"},
	{"log-json", 0, "PANKHA_LOG_JSON", "off", "log one JSON object per line"},
	{"verbose", 1, "PANKHA_VERBOSE", "1", "0 warnings only, 1 events, 2 debug"},
	{"db-pool", 1, "PANKHA_DB_POOL", "2", "database connections for dashboards, handshakes and commands"},
	{"ingest-connections", 1, "PANKHA_INGEST_CONNECTIONS", "2", "database connections for ingest; agents are sharded over them by id"},
	{"batch-window-ms", 1, "PANKHA_BATCH_WINDOW_MS", "5", "how long frames wait to share an ingest call"},
	{"batch-max", 1, "PANKHA_BATCH_MAX", "500", "most frames in one ingest call"},
	{"pipeline-depth", 1, "PANKHA_PIPELINE_DEPTH", "4", "ingest calls in flight at once on each ingest connection"},
	{"max-held-frames", 1, "PANKHA_MAX_HELD_FRAMES", "50000", "frames held un-committed before all reading pauses"},
	{"agent-held-frames", 1, "PANKHA_AGENT_HELD_FRAMES", "200", "frames of one agent held before its reading pauses"},
	{"silence-timeout", 1, "PANKHA_SILENCE_TIMEOUT", "60", "seconds of silence before an agent is closed (0: never)"},
	{"max-message", 1, "PANKHA_MAX_MESSAGE", "65536", "largest message in bytes (close 1009 above)"},
	{"rate-limit", 1, "PANKHA_RATE_LIMIT", "100", "messages per minute per agent (0: unlimited)"},
	{"connect-limit-agent", 1, "PANKHA_CONNECT_LIMIT_AGENT", "30", "handshakes per minute per agent id (0: unlimited)"},
	{"connect-limit-ip", 1, "PANKHA_CONNECT_LIMIT_IP", "0", "handshakes per minute per address (0: unlimited)"},
	{"max-connections", 1, "PANKHA_MAX_CONNECTIONS", "20000", "agent WebSocket connections at most (dashboards have --ui-max-connections)"},
	{"ui-max-connections", 1, "PANKHA_UI_MAX_CONNECTIONS", "1000", "/ws/ui dashboard connections at most, a budget apart from the agents'"},
	{"ui-max-per-token", 1, "PANKHA_UI_MAX_PER_TOKEN", "20", "/ws/ui connections at once per dashboard token (0: unlimited)"},
	{"ui-max-per-ip", 1, "PANKHA_UI_MAX_PER_IP", "50", "/ws/ui connections at once per client address (0: unlimited)"},
	{"ui-rate-limit", 1, "PANKHA_UI_RATE_LIMIT", "20", "messages per second per dashboard connection, sustained (0: unlimited); one over it is answered with error rate_limited and dropped"},
	{"ui-rate-burst", 1, "PANKHA_UI_RATE_BURST", "100", "messages a dashboard connection may send at once above --ui-rate-limit; more than --ui-rate-limit (at least 10) dropped in a minute close it with 1008"},
	{"ui-idle-timeout", 1, "PANKHA_UI_IDLE_TIMEOUT", "90", "seconds without a message from a dashboard (the dashboard pings every 25 s) before it is closed with 4008 (0: never)"},
	{"max-queued-out", 1, "PANKHA_MAX_QUEUED_OUT", "1048576", "bytes queued to one client before it is dropped"},
	{"max-body", 1, "PANKHA_MAX_BODY", "1048576", "largest HTTP request body, after gunzip"},
	{"cors-origin", 1, "PANKHA_CORS_ORIGIN", "", "origins allowed to call the HTTP API from a browser, comma-separated (empty: none)"},
	{"http-rate-token", 1, "PANKHA_HTTP_RATE_TOKEN", "600", "API, /sync and /register requests per minute per token (0: unlimited)"},
	{"http-rate-ip", 1, "PANKHA_HTTP_RATE_IP", "3000", "API, /sync and /register requests per minute per address (0: unlimited)"},
	{"request-timeout", 1, "PANKHA_REQUEST_TIMEOUT", "20", "seconds an HTTP request or WebSocket handshake may take as a whole, from its first byte or the previous response (0: none)"},
	{"max-connections-ip", 1, "PANKHA_MAX_CONNECTIONS_IP", "64", "open connections (HTTP and WebSocket) per client address; trusted proxies are exempt (0: unlimited)"},
	{"auth-fail-limit-ip", 1, "PANKHA_AUTH_FAIL_LIMIT_IP", "60", "refused credentials per minute per address before its handshakes and API requests get 429 (0: unlimited)"},
	{"trusted-proxy", 1, "PANKHA_TRUSTED_PROXY", "", "addresses or CIDR networks of reverse proxies whose X-Forwarded-For names the client, comma-separated (empty: none)"},
	{"proxy-protocol", 1, "PANKHA_PROXY_PROTOCOL", "off", "connections from --trusted-proxy addresses start with a PROXY protocol header (v1 or v2) naming the client; the bridge listens itself (on/off)"},
	{"proxy-protocol-timeout", 1, "PANKHA_PROXY_PROTOCOL_TIMEOUT", "5000", "milliseconds a --trusted-proxy connection may take to send its whole PROXY header before it is closed"},
	{"metrics-token-file", 1, "PANKHA_METRICS_TOKEN_FILE", "", "file holding a bearer token /metrics requires (empty: /metrics is open)"},
	{"max-held-bytes", 1, "PANKHA_MAX_HELD_BYTES", "268435456", "bytes of frames held un-committed before all reading pauses"},
	{"agent-held-bytes", 1, "PANKHA_AGENT_HELD_BYTES", "1048576", "bytes of one agent's frames held before its reading pauses; a frame arriving while twice this is held closes it (1008)"},
	{"deflate", 1, "PANKHA_DEFLATE", "on", "offer permessage-deflate (on/off)"},
	{"deflate-window", 1, "PANKHA_DEFLATE_WINDOW", "12", "window bits, 9..15, asked of clients that offer client_max_window_bits; 2^N bytes kept per connection"},
	{"deflate-mem-level", 1, "PANKHA_DEFLATE_MEM_LEVEL", "1", "zlib memLevel of the deflater, 1..9"},
	{"command-visibility", 1, "PANKHA_COMMAND_VISIBILITY", "30", "seconds a claimed command stays invisible"},
	{"heartbeat-interval", 1, "PANKHA_HEARTBEAT_INTERVAL", "5", "seconds between heartbeats in pankha.bridges; a bridge silent for 3 beats + 2 s has its connections closed (0: no heartbeat)"},
	{"help", 0, NULL, NULL, "show this help"},
	{"version", 0, NULL, NULL, "show the version"},
};
#define NDOCS (sizeof(docs) / sizeof(docs[0]))

static void
usage(FILE *out)
{
	fprintf(out, "Usage: pankha-bridge [OPTION]...\n"
			"Bridges Pankha agents and dashboards (WebSocket, HTTP) to PostgreSQL.\n\n");
	for (size_t i = 0; i < NDOCS; i++)
	{
		char		flag[64];

		snprintf(flag, sizeof(flag), "--%s%s", docs[i].name, docs[i].has_arg ? "=VALUE" : "");
		fprintf(out, "  %-32s %s", flag, docs[i].help);
		if (docs[i].deflt)
			fprintf(out, " (default: %s%s%s)", docs[i].deflt[0] ? "" : "\"",
					docs[i].deflt, docs[i].deflt[0] ? "" : "\"");
		if (docs[i].env)
			fprintf(out, " [env %s]", docs[i].env);
		fprintf(out, "\n");
	}
}

/* Parse an integer option within [lo, hi]; exits with a message if not. */
static long
int_opt(const char *name, const char *v, long lo, long hi)
{
	char	   *end;
	long		n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
	{
		fprintf(stderr, "pankha-bridge: --%s: \"%s\" is not an integer between %ld and %ld\n",
				name, v, lo, hi);
		exit(2);
	}
	return n;
}

static bool
bool_opt(const char *name, const char *v)
{
	if (!strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
		return true;
	if (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
		return false;
	fprintf(stderr, "pankha-bridge: --%s: \"%s\" is not on or off\n", name, v);
	exit(2);
}

/* The first line of a file holding a secret; exits with a message if it has none. */
static const char *
read_secret(const char *name, const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[512];

	if (!f || !fgets(line, sizeof(line), f))
	{
		fprintf(stderr, "pankha-bridge: --%s: cannot read \"%s\": %s\n", name, path,
				f ? "empty file" : strerror(errno));
		if (f)
			fclose(f);
		exit(2);
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (strlen(line) < 16)
	{
		fprintf(stderr, "pankha-bridge: --%s: the token in \"%s\" is shorter than 16 characters\n",
				name, path);
		exit(2);
	}
	return strdup(line);
}

/* Apply one option value (from the environment or the command line). */
static void
set_option(const char *name, const char *v)
{
	struct config *c = &srv.cfg;

	if (!strcmp(name, "db"))
		c->db = v;
	else if (!strcmp(name, "listen"))
		c->listen = v;
	else if (!strcmp(name, "dashboard"))
		c->dashboard = v[0] ? v : NULL;
	else if (!strcmp(name, "tls-cert"))
		c->tls_cert = v[0] ? v : NULL;
	else if (!strcmp(name, "tls-key"))
		c->tls_key = v[0] ? v : NULL;
	else if (!strcmp(name, "bridge-id"))
		c->bridge_id = v[0] ? v : NULL;
	else if (!strcmp(name, "log-file"))
		c->log_file = v[0] ? v : NULL;
	else if (!strcmp(name, "log-json"))
		c->log_json = v ? bool_opt(name, v) : true;
	else if (!strcmp(name, "verbose"))
		c->verbose = (int) int_opt(name, v, 0, 2);
	else if (!strcmp(name, "db-pool"))
		c->db_pool = (int) int_opt(name, v, 1, 64);
	else if (!strcmp(name, "ingest-connections"))
		c->ingest_connections = (int) int_opt(name, v, 1, 16);
	else if (!strcmp(name, "batch-window-ms"))
		c->batch_window_ms = (int) int_opt(name, v, 0, 1000);
	else if (!strcmp(name, "batch-max"))
		c->batch_max = (int) int_opt(name, v, 1, 10000);
	else if (!strcmp(name, "pipeline-depth"))
		c->pipeline_depth = (int) int_opt(name, v, 1, 64);
	else if (!strcmp(name, "max-held-frames"))
		c->max_held_frames = (int) int_opt(name, v, 10, 10000000);
	else if (!strcmp(name, "agent-held-frames"))
		c->agent_held_frames = (int) int_opt(name, v, 2, 1000000);
	else if (!strcmp(name, "silence-timeout"))
		c->silence_timeout_s = (int) int_opt(name, v, 0, 86400);
	else if (!strcmp(name, "max-message"))
		c->max_message = (size_t) int_opt(name, v, 256, 64 * 1024 * 1024);
	else if (!strcmp(name, "rate-limit"))
		c->rate_per_minute = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "connect-limit-agent"))
		c->connects_per_minute_agent = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "connect-limit-ip"))
		c->connects_per_minute_ip = (int) int_opt(name, v, 0, 10000000);
	else if (!strcmp(name, "max-connections"))
		c->max_connections = (int) int_opt(name, v, 1, 1000000);
	else if (!strcmp(name, "ui-max-connections"))
		c->ui_max_connections = (int) int_opt(name, v, 1, 1000000);
	else if (!strcmp(name, "ui-max-per-token"))
		c->ui_max_per_token = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "ui-max-per-ip"))
		c->ui_max_per_ip = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "ui-rate-limit"))
		c->ui_rate_per_s = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "ui-rate-burst"))
		c->ui_rate_burst = (int) int_opt(name, v, 1, 1000000);
	else if (!strcmp(name, "ui-idle-timeout"))
		c->ui_idle_timeout_s = (int) int_opt(name, v, 0, 86400);
	else if (!strcmp(name, "max-queued-out"))
		c->max_queued_out = (size_t) int_opt(name, v, 1024, 1L << 30);
	else if (!strcmp(name, "max-body"))
		c->max_body = (size_t) int_opt(name, v, 1024, 1L << 30);
	else if (!strcmp(name, "cors-origin"))
		c->cors_origins = v[0] ? v : NULL;
	else if (!strcmp(name, "http-rate-token"))
		c->http_rate_token = (int) int_opt(name, v, 0, 10000000);
	else if (!strcmp(name, "http-rate-ip"))
		c->http_rate_ip = (int) int_opt(name, v, 0, 10000000);
	else if (!strcmp(name, "request-timeout"))
		c->request_timeout_s = (int) int_opt(name, v, 0, 3600);
	else if (!strcmp(name, "max-connections-ip"))
		c->max_connections_ip = (int) int_opt(name, v, 0, 1000000);
	else if (!strcmp(name, "auth-fail-limit-ip"))
		c->auth_fail_limit_ip = (int) int_opt(name, v, 0, 10000000);
	else if (!strcmp(name, "trusted-proxy"))
	{
		c->trusted_proxies = v[0] ? v : NULL;
		if (limits_set_trusted(v))
			exit(2);
	}
	else if (!strcmp(name, "proxy-protocol"))
		c->proxy_protocol = bool_opt(name, v);
	else if (!strcmp(name, "proxy-protocol-timeout"))
		c->proxy_protocol_timeout_ms = (int) int_opt(name, v, 1, 600000);
	else if (!strcmp(name, "metrics-token-file"))
		c->metrics_token = v[0] ? read_secret(name, v) : NULL;
	else if (!strcmp(name, "max-held-bytes"))
		c->max_held_bytes = (size_t) int_opt(name, v, 65536, 1L << 40);
	else if (!strcmp(name, "agent-held-bytes"))
		c->agent_held_bytes = (size_t) int_opt(name, v, 1024, 1L << 32);
	else if (!strcmp(name, "deflate"))
		c->deflate = bool_opt(name, v);
	else if (!strcmp(name, "deflate-window"))
		c->deflate_window = (int) int_opt(name, v, 9, 15);
	else if (!strcmp(name, "deflate-mem-level"))
		c->deflate_mem_level = (int) int_opt(name, v, 1, 9);
	else if (!strcmp(name, "command-visibility"))
		c->command_visibility_s = (int) int_opt(name, v, 1, 3600);
	else if (!strcmp(name, "heartbeat-interval"))
		c->heartbeat_interval_s = (int) int_opt(name, v, 0, 600);
}

/* Defaults, then the environment, then the command line. */
static void
parse_options(int argc, char **argv)
{
	struct option longopts[NDOCS + 1];
	int			ch, idx;

	for (size_t i = 0; i < NDOCS; i++)
	{
		if (docs[i].deflt && strcmp(docs[i].name, "bridge-id") &&
			strcmp(docs[i].name, "log-json"))
			set_option(docs[i].name, docs[i].deflt);
		if (docs[i].env && getenv(docs[i].env))
			set_option(docs[i].name, getenv(docs[i].env));
		longopts[i].name = docs[i].name;
		longopts[i].has_arg = docs[i].has_arg ? required_argument : no_argument;
		longopts[i].flag = NULL;
		longopts[i].val = 0;
	}
	memset(&longopts[NDOCS], 0, sizeof(longopts[0]));
	if (!getenv("PANKHA_LOG_JSON"))
		srv.cfg.log_json = false;

	while ((ch = getopt_long(argc, argv, "hV", longopts, &idx)) != -1)
	{
		if (ch == 'h' || (ch == 0 && !strcmp(longopts[idx].name, "help")))
		{
			usage(stdout);
			exit(0);
		}
		if (ch == 'V' || (ch == 0 && !strcmp(longopts[idx].name, "version")))
		{
			printf("pankha-bridge %s (libwebsockets %s, libpq %d)\n", BRIDGE_VERSION,
				   lws_get_library_version(), PQlibVersion());
			exit(0);
		}
		if (ch != 0)
		{
			usage(stderr);
			exit(2);
		}
		if (!strcmp(longopts[idx].name, "log-json"))
			srv.cfg.log_json = true;
		else
			set_option(longopts[idx].name, optarg);
	}
	if (optind < argc)
	{
		fprintf(stderr, "pankha-bridge: unexpected argument \"%s\"\n", argv[optind]);
		exit(2);
	}
	if (srv.cfg.proxy_protocol && !srv.cfg.trusted_proxies)
	{
		fprintf(stderr, "pankha-bridge: --proxy-protocol needs --trusted-proxy: only those addresses may send a PROXY header\n");
		exit(2);
	}
	if (!srv.cfg.tls_cert != !srv.cfg.tls_key)
	{
		fprintf(stderr, "pankha-bridge: --tls-cert and --tls-key go together\n");
		exit(2);
	}
}

/* ---------------------------------------------------------------- signals */

static struct ev_loop *loop;
static ev_signal sig_term, sig_int, sig_hup;
static struct btimer drain_sul;
static lws_usec_t drain_started;
static int	drain_stage;

/*
 * Shutdown, step by step: commit what is held and send its acks, close the
 * sockets with 1001, let the disconnects be recorded, then stop.
 */
static void
drain_cb(lws_sorted_usec_list_t *sul)
{
	lws_usec_t	waited = now_us() - drain_started;

	if (drain_stage == 0)
	{
		ingest_flush();
		if ((ingest_held() == 0 && db_lane_load(LANE_INGEST) == 0) ||
			waited > 10 * LWS_US_PER_SEC)
		{
			if (ingest_held())
				blog("error", "shutdown", "%zu frames not committed (database down?)",
					 ingest_held());
			drain_stage = 1;
			ws_close_all(LWS_CLOSE_STATUS_GOINGAWAY, "bridge shutting down");
		}
	}
	else if (drain_stage == 1)
	{
		/* the last handshakes' last_used_at and auth.failed rows */
		creds_flush_reports();
		if ((agents_count() == 0 && ui_count() == 0 && (db_idle() || !db_ready())) ||
			waited > 15 * LWS_US_PER_SEC)
		{
			drain_stage = 2;
			ev_break(loop, EVBREAK_ALL);
			return;
		}
	}
	timer_schedule(&drain_sul, drain_cb, 20 * LWS_US_PER_MS);
}

/* Signals arrive as libev watchers, inside the loop. */
static void
on_signal(struct ev_loop *l, ev_signal *w, int revents)
{
	if (w->signum == SIGHUP)
	{
		log_reopen();
		blog("info", "sighup", "log reopened");
		tls_reload();
		return;
	}
	server_stop(0);
}

/* Drain and stop, as on SIGTERM; main() then returns status. */
void
server_stop(int status)
{
	if (status && !srv.exit_status)
		srv.exit_status = status;
	if (srv.draining)
		return;
	srv.draining = true;
	drain_started = now_us();
	blog("info", "shutdown", "draining %d agents, %zu frames held",
		 agents_count(), ingest_held());
	timer_schedule(&drain_sul, drain_cb, 1);
}

/* ---------------------------------------------------------------- heap */

static struct btimer trim_sul;

/*
 * Every 10 s, hand whole free pages inside the heap back to the kernel.
 * free() only shrinks the heap from its top, so the memory of a backlog
 * (frames held while the database caught up) would otherwise stay in RSS,
 * scattered between the allocations of live connections.
 */
static void
trim_cb(lws_sorted_usec_list_t *sul)
{
	malloc_trim(0);
	timer_schedule(&trim_sul, trim_cb, 10 * LWS_US_PER_SEC);
}

/* ---------------------------------------------------------------- main */

static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000};
static const double latency_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
0.1, 0.25, 0.5, 1, 2.5, 5};

static void
init_histogram(struct histogram *h, const char *name, const char *help,
			   const double *bounds, int n)
{
	h->name = name;
	h->help = help;
	h->nbounds = n;
	memcpy(h->bounds, bounds, sizeof(double) * n);
}

/* A retry policy whose zero hangup time turns lws' validity checks off. */
static const lws_retry_bo_t no_validity = {.secs_since_valid_ping = 0, .secs_since_valid_hangup = 0};

/*
 * Raise the soft limit on open files to WANT (never lower it, never past
 * the hard limit); say so when the hard limit leaves less than WANT.
 */
static void
raise_fd_limit(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
	{
		blog("warn", "startup", "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
	{
		rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want) ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			blog("warn", "startup", "setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		blog("warn", "startup", "open files limited to %llu, below --max-connections + 256 = %llu",
			 (unsigned long long) rl.rlim_cur, (unsigned long long) want);
}

/* Every protocol of the vhost: HTTP, the two WebSocket ones, the database sockets. */
static const struct lws_protocols protocols[] = {
	HTTP_PROTOCOL,
	WS_PROTOCOLS,
	DB_PROTOCOL,
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* The WebSocket endpoints, by path (ws.c). */
static const struct ws_endpoint *const endpoints[] = {
	&agent_ws_endpoint,
	&ui_ws_endpoint,
	NULL
};

int
main(int argc, char **argv)
{
	void	   *foreign_loops[1];
	static struct lws_protocol_vhost_options pvo_default = {NULL, NULL, "default", ""};
	static struct lws_protocol_vhost_options pvo = {NULL, &pvo_default, "pankha", ""};
	static struct lws_extension exts[2];
	static struct lws_http_mount mount_api, mount_static;
	struct lws_context_creation_info info;
	char		host[128];
	const char *colon;
	int			port;

	parse_options(argc, argv);
	log_configure(srv.cfg.log_file, srv.cfg.log_json, srv.cfg.verbose);
	log_reopen();
	lws_set_log_level(srv.cfg.verbose >= 2 ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR, NULL);

	colon = strrchr(srv.cfg.listen, ':');
	if (!colon || colon == srv.cfg.listen || (size_t) (colon - srv.cfg.listen) >= sizeof(host))
	{
		fprintf(stderr, "pankha-bridge: --listen: \"%s\" is not HOST:PORT\n", srv.cfg.listen);
		return 2;
	}
	memcpy(host, srv.cfg.listen, colon - srv.cfg.listen);
	host[colon - srv.cfg.listen] = '\0';
	port = (int) int_opt("listen", colon + 1, 1, 65535);
	if (srv.cfg.bridge_id)
		snprintf(srv.bridge_id, sizeof(srv.bridge_id), "%s", srv.cfg.bridge_id);
	else
	{
		char		hn[64];

		if (gethostname(hn, sizeof(hn)))
			snprintf(hn, sizeof(hn), "bridge");
		hn[sizeof(hn) - 1] = '\0';
		snprintf(srv.bridge_id, sizeof(srv.bridge_id), "%s:%d", hn, port);
	}

	init_histogram(&srv.m.batch_size, "pankha_bridge_ingest_batch_frames",
				   "Frames per ingest call.", batch_bounds, 11);
	init_histogram(&srv.m.commit_seconds, "pankha_bridge_ingest_commit_seconds",
				   "Time from sending an ingest call to its result.", latency_bounds, 13);
	init_histogram(&srv.m.command_seconds, "pankha_bridge_command_delivery_seconds",
				   "Time from a command being claimed to it being written to the agent.",
				   latency_bounds, 13);
	srv.started = now_us();

	ws_init(endpoints);
	http_init(http_routes, http_nroutes);

	memset(&info, 0, sizeof(info));
	/* with --proxy-protocol, proxy_listen.c listens and hands connections over */
	info.port = srv.cfg.proxy_protocol ? CONTEXT_PORT_NO_LISTEN_SERVER : port;
	info.iface = srv.cfg.proxy_protocol ? NULL : host;
	info.protocols = protocols;
	info.pvo = &pvo;
	info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
		LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (!strchr(host, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;	/* bind exactly the IPv4 address */
	info.timeout_secs = 30;
	info.pt_serv_buf_size = 16384;
	info.max_http_header_data = 4096;
	/*
	 * Header tables are taken on demand, up to this many at once: enough
	 * for every connection the per-address and total caps admit while its
	 * request lasts (--request-timeout), so slow clients cannot starve the
	 * others of them (H2).
	 */
	info.max_http_header_pool = 4096;
	info.vhost_name = "pankha";
	/*
	 * No lws validity (idle ping/hangup) timers: lws 4.1.6 would re-insert
	 * each connection's timer into one sorted list on traffic, a walk over
	 * every connection (16% of the CPU at 6,000 agents).  Silent agents
	 * are closed by our own once-a-second sweep (--silence-timeout).
	 */
	info.retry_and_idle_policy = &no_validity;

	/* the API and probes go to the http protocol; static files at / */
	memset(&mount_api, 0, sizeof(mount_api));
	mount_api.mountpoint = "/api";
	mount_api.mountpoint_len = 4;
	mount_api.origin = "http";
	mount_api.origin_protocol = LWSMPRO_CALLBACK;
	if (srv.cfg.dashboard)
	{
		/* a mount at / would take the probes too: give them their own */
		static const char *const probes[] = {"/healthz", "/readyz", "/metrics"};
		static struct lws_http_mount mount_probe[3];
		struct lws_http_mount *last = &mount_api;

		for (int i = 0; i < 3; i++)
		{
			memset(&mount_probe[i], 0, sizeof(mount_probe[i]));
			mount_probe[i].mountpoint = probes[i];
			mount_probe[i].mountpoint_len = (unsigned char) strlen(probes[i]);
			mount_probe[i].origin = "http";
			mount_probe[i].origin_protocol = LWSMPRO_CALLBACK;
			last->mount_next = &mount_probe[i];
			last = &mount_probe[i];
		}
		memset(&mount_static, 0, sizeof(mount_static));
		mount_static.mountpoint = "/";
		mount_static.mountpoint_len = 1;
		mount_static.origin = srv.cfg.dashboard;
		mount_static.def = "index.html";
		mount_static.origin_protocol = LWSMPRO_FILE;
		/* bound to a protocol, so FILE_COMPLETION resets the connection for its next request */
		mount_static.protocol = "http";
		last->mount_next = &mount_static;
	}
	info.mounts = &mount_api;

	if (srv.cfg.deflate)
	{
		exts[0].name = "permessage-deflate";
		exts[0].callback = deflate_extension;
		exts[0].client_offer = "permessage-deflate; client_max_window_bits";
		memset(&exts[1], 0, sizeof(exts[1]));
		info.extensions = exts;
	}
	if (srv.cfg.tls_cert)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = srv.cfg.tls_cert;
		info.ssl_private_key_filepath = srv.cfg.tls_key;
	}

	/*
	 * One libev loop (epoll) carries everything: with thousands of
	 * connections, poll() over every socket on each wakeup would dominate.
	 */
	signal(SIGPIPE, SIG_IGN);
	json_arena_init();
	loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop)
	{
		blog("error", "startup", "cannot create the event loop");
		return 1;
	}
	srv.loop = loop;
	foreign_loops[0] = loop;
	info.foreign_loops = foreign_loops;
	info.options |= LWS_SERVER_OPTION_LIBEV;
	/*
	 * No info.fd_limit_per_thread: lws 4.1.6 then finds the connection of
	 * every socket event by a linear scan of its whole fd table (it was
	 * 37% of the bridge's CPU with 6,000 agents).  Without it lws sizes the
	 * table from RLIMIT_NOFILE and indexes it by fd, so raise that instead.
	 */
	raise_fd_limit((rlim_t) srv.cfg.max_connections + srv.cfg.ui_max_connections + 256);
	ev_signal_init(&sig_term, on_signal, SIGTERM);
	ev_signal_init(&sig_int, on_signal, SIGINT);
	ev_signal_init(&sig_hup, on_signal, SIGHUP);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);
	ev_signal_start(loop, &sig_hup);

	srv.context = lws_create_context(&info);
	if (!srv.context)
	{
		blog("error", "startup", "cannot create the server on %s", srv.cfg.listen);
		return 1;
	}
	srv.vhost = lws_get_vhost_by_name(srv.context, "pankha");
	/* modules register their channels and subscriptions before db_init() */
	if (!srv.vhost || timers_init(srv.context, srv.loop) || creds_init() || agents_init() ||
		agent_commands_init() || ui_init() || metrics_init() || extversion_init() || limits_init() ||
		db_init(srv.context, srv.vhost) || heartbeat_init() ||
		(srv.cfg.proxy_protocol && proxy_listen_start(host, port)))
	{
		blog("error", "startup", "cannot start");
		lws_context_destroy(srv.context);
		return 1;
	}
	if (srv.cfg.tls_cert && !tls_can_reload())
		blog("warn", "startup", "lws did not pass its TLS context: SIGHUP cannot reload %s",
			 srv.cfg.tls_cert);
	timer_schedule(&trim_sul, trim_cb, 10 * LWS_US_PER_SEC);
	blog("warn", "startup", "pankha-bridge %s listening on %s as %s", BRIDGE_VERSION,
		 srv.cfg.listen, srv.bridge_id);
	{
		/* close what a previous run under this id left open */
		struct db_query *q = db_query_new(LANE_GENERAL,
										  "SELECT pankha.bridge_started($1)", NULL, NULL);

		if (q && !db_query_param(q, srv.bridge_id, strlen(srv.bridge_id)))
			db_submit(q);
		else if (q)
			db_query_free(q);
	}

	ev_run(loop, 0);

	blog("warn", "shutdown", "stopped: %llu frames committed",
		 (unsigned long long) srv.m.frames_committed);
	proxy_listen_stop();
	heartbeat_shutdown();
	db_shutdown();
	creds_shutdown();
	limits_shutdown();
	timers_shutdown();
	lws_context_destroy(srv.context);
	ev_signal_stop(loop, &sig_term);
	ev_signal_stop(loop, &sig_int);
	ev_signal_stop(loop, &sig_hup);
	ev_run(loop, EVRUN_NOWAIT);
	ev_loop_destroy(loop);
	return srv.exit_status;
}
