/*
 * main.c - pankha-agent: options (flags, environment, config file), the
 * data frame, and start-up and shut-down around the event loop in link.c.
 *
 * Every option is a long flag, an environment variable PANKHA_AGENT_<NAME>
 * (upper case, '-' as '_') and a "name = value" line in the config file;
 * flags win over the environment, which wins over the file.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>			/* isfinite: a compiler built-in */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define DEFAULT_CONFIG "/etc/pankha/agent.conf"

enum opt_id
{
	OPT_CONFIG = 1000, OPT_SERVER, OPT_AGENT_ID, OPT_NAME, OPT_TOKEN, OPT_TOKEN_FILE, OPT_CA_FILE,
	OPT_INSECURE, OPT_SYSFS_ROOT, OPT_PROC_ROOT, OPT_DISK_PATH, OPT_INTERVAL, OPT_BUFFER_SECONDS,
	OPT_BUFFER_MAX_BYTES, OPT_BUFFER_FILE, OPT_FAILSAFE_GRACE, OPT_FAILSAFE_SPEED,
	OPT_EMERGENCY_TEMP, OPT_PING_INTERVAL, OPT_RECONNECT_MIN, OPT_RECONNECT_MAX,
	OPT_FALLBACK_AFTER, OPT_STATUS_INTERVAL, OPT_ENROLL, OPT_ENROLLMENT_KEY, OPT_SIMULATE,
	OPT_SIMULATE_ONLY, OPT_SIM_ONCE, OPT_SIM_SEED, OPT_LOG_LEVEL, OPT_DEFLATE, OPT_STATE_DIR, OPT_MIN_SPEED, OPT_ENROLLMENT_KEY_FILE, OPT_HELP,
	OPT_VERSION
};

/* One option: flag name, whether it takes a value, its default and help. */
struct opt_def
{
	const char *name;
	int			id;
	bool		has_arg;
	const char *def;			/* default as shown in --help (NULL: none) */
	const char *help;
};

static const struct opt_def opt_defs[] = {
	{"config", OPT_CONFIG, true, DEFAULT_CONFIG, "config file of \"name = value\" lines"},
	{"server", OPT_SERVER, true, "ws://127.0.0.1:8080", "bridge URL (ws:// or wss://)"},
	{"agent-id", OPT_AGENT_ID, true, "the host name", "this agent's id (1-64 bytes)"},
	{"name", OPT_NAME, true, "the agent id", "display name sent at enrollment"},
	{"token", OPT_TOKEN, true, "none", "agent bearer token; visible in ps on the command line: use --token-file"},
	{"token-file", OPT_TOKEN_FILE, true, "/etc/pankha/agent.token", "file holding the token"},
	{"ca-file", OPT_CA_FILE, true, "system CAs", "CA bundle to verify the server (wss)"},
	{"insecure", OPT_INSECURE, false, "off", "skip TLS certificate verification"},
	{"sysfs-root", OPT_SYSFS_ROOT, true, "/sys", "sysfs root (hwmon is under class/hwmon)"},
	{"proc-root", OPT_PROC_ROOT, true, "/proc", "procfs root"},
	{"disk-path", OPT_DISK_PATH, true, "/", "filesystem whose usage is reported"},
	{"interval", OPT_INTERVAL, true, "3", "seconds between frames until the server sets it (0.5-30)"},
	{"buffer-seconds", OPT_BUFFER_SECONDS, true, "3600", "seconds of unacked frames to keep"},
	{"buffer-max-bytes", OPT_BUFFER_MAX_BYTES, true, "33554432", "byte bound of that buffer"},
	{"buffer-file", OPT_BUFFER_FILE, true, "none", "persist unacked frames in this file"},
	{"state-dir", OPT_STATE_DIR, true, "/var/lib/pankha", "keeps the fans' original modes across crashes"},
	{"failsafe-grace", OPT_FAILSAFE_GRACE, true, "60", "seconds without the server before failsafe"},
	{"failsafe-speed", OPT_FAILSAFE_SPEED, true, "70", "fan speed in % without the server; it may only raise it"},
	{"emergency-temp", OPT_EMERGENCY_TEMP, true, "85", "degrees C at which all fans go to 100 %; the server may only lower it"},
	{"min-speed", OPT_MIN_SPEED, true, "0", "floor in % of every fan (PERCENT) or of one (FAN=PERCENT), repeatable; "
	"nothing remote lowers it"},
	{"ping-interval", OPT_PING_INTERVAL, true, "30", "seconds between pings"},
	{"reconnect-min", OPT_RECONNECT_MIN, true, "1", "shortest reconnect delay, seconds"},
	{"reconnect-max", OPT_RECONNECT_MAX, true, "60", "longest reconnect delay, seconds"},
	{"fallback-after", OPT_FALLBACK_AFTER, true, "3", "failed handshakes before trying HTTP sync"},
	{"deflate", OPT_DEFLATE, true, "on", "offer permessage-deflate (on/off)"},
	{"status-interval", OPT_STATUS_INTERVAL, true, "60", "seconds between status messages"},
	{"enroll", OPT_ENROLL, true, "none", "register at this bridge URL, store the token, exit"},
	{"enrollment-key", OPT_ENROLLMENT_KEY, true, "none", "enrollment key for --enroll (use --enrollment-key-file)"},
	{"enrollment-key-file", OPT_ENROLLMENT_KEY_FILE, true, "none", "file holding the enrollment key"},
	{"simulate", OPT_SIMULATE, true, "none", "simulate a machine in this directory and monitor it"},
	{"simulate-only", OPT_SIMULATE_ONLY, false, "off", "with --simulate: only run the simulator"},
	{"sim-once", OPT_SIM_ONCE, false, "off", "with --simulate-only: write the tree and exit"},
	{"sim-seed", OPT_SIM_SEED, true, "1", "simulator random seed"},
	{"log-level", OPT_LOG_LEVEL, true, "info", "error, warning, info or debug"},
	{"help", OPT_HELP, false, NULL, "show this help"},
	{"version", OPT_VERSION, false, NULL, "show the version"},
};

#define NOPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

static volatile sig_atomic_t sim_stop;

static void
usage(FILE *out)
{
	fprintf(out, "Usage: pankha-agent [OPTION]...\n"
			"Streams hwmon and /proc telemetry to a Pankha bridge and runs its fan commands\n"
			"within safety limits.\n\n");
	for (size_t i = 0; i < NOPTS; i++)
	{
		char		flag[64];
		char		env[64];
		size_t		n = 0;

		snprintf(flag, sizeof(flag), "--%s%s", opt_defs[i].name, opt_defs[i].has_arg ? "=VALUE" : "");
		n = (size_t) snprintf(env, sizeof(env), "PANKHA_AGENT_");
		for (const char *s = opt_defs[i].name; *s && n + 1 < sizeof(env); s++)
			env[n++] = *s == '-' ? '_' : (char) toupper((unsigned char) *s);
		env[n] = '\0';
		fprintf(out, "  %-26s %s", flag, opt_defs[i].help);
		if (opt_defs[i].def)
			fprintf(out, " (default: %s)", opt_defs[i].def);
		if (opt_defs[i].id != OPT_HELP && opt_defs[i].id != OPT_VERSION)
			fprintf(out, "\n  %-26s   env %s", "", env);
		fputc('\n', out);
	}
	fprintf(out, "\nExamples:\n"
			"  pankha-agent --server ws://bridge:8080 --agent-id host1 --token-file /etc/pankha/agent.token\n"
			"  pankha-agent --enroll http://bridge:8080 --enrollment-key-file /root/key --agent-id host1\n"
			"  pankha-agent --simulate /tmp/fake --server ws://127.0.0.1:8080 --agent-id sim1 --token-file T\n");
}

static int
parse_double(const char *name, const char *v, double lo, double hi, double *out)
{
	char	   *end;
	double		d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
	{
		fprintf(stderr, "pankha-agent: --%s: \"%s\" is not a number between %g and %g\n", name, v, lo, hi);
		return -1;
	}
	*out = d;
	return 0;
}

static int
parse_bool(const char *name, const char *v, bool *out)
{
	if (!v || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
		*out = true;
	else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
		*out = false;
	else
	{
		fprintf(stderr, "pankha-agent: --%s: \"%s\" is not a boolean\n", name, v);
		return -1;
	}
	return 0;
}

static int
set_string(char **field, const char *v)
{
	char	   *c = strdup(v);

	if (!c)
	{
		fprintf(stderr, "pankha-agent: out of memory\n");
		return -1;
	}
	free(*field);
	*field = c;
	return 0;
}

/* Set one option from any source; -1 (message printed) when invalid. */
static int
set_option(struct pk_agent *a, const struct opt_def *o, const char *v)
{
	double		d;
	int			lvl;

	switch (o->id)
	{
		case OPT_CONFIG:
			return 0;			/* read before everything else */
		case OPT_SERVER:
			return set_string(&a->server_url, v);
		case OPT_AGENT_ID:
			if (!*v || strlen(v) > PK_ID_MAX)
			{
				fprintf(stderr, "pankha-agent: --agent-id: must be 1 to %d bytes\n", PK_ID_MAX);
				return -1;
			}
			for (const char *s = v; *s; s++)
				if (iscntrl((unsigned char) *s))
				{
					fprintf(stderr, "pankha-agent: --agent-id: control characters are not allowed\n");
					return -1;
				}
			return set_string(&a->agent_id, v);
		case OPT_NAME:
			return set_string(&a->agent_name, v);
		case OPT_TOKEN:
			return set_string(&a->token, v);
		case OPT_TOKEN_FILE:
			return set_string(&a->token_file, v);
		case OPT_CA_FILE:
			return set_string(&a->ca_file, v);
		case OPT_INSECURE:
			return parse_bool(o->name, v, &a->insecure);
		case OPT_SYSFS_ROOT:
			return set_string(&a->sysfs_root, v);
		case OPT_PROC_ROOT:
			return set_string(&a->proc_root, v);
		case OPT_DISK_PATH:
			return set_string(&a->disk_path, v);
		case OPT_INTERVAL:
			return parse_double(o->name, v, 0.5, 30, &a->settings.update_interval);
		case OPT_BUFFER_SECONDS:
			return parse_double(o->name, v, 1, 7 * 86400, &a->buffer_seconds);
		case OPT_BUFFER_MAX_BYTES:
			if (parse_double(o->name, v, 4096, 1e12, &d) != 0)
				return -1;
			a->buffer_max_bytes = (size_t) d;
			return 0;
		case OPT_BUFFER_FILE:
			return set_string(&a->buffer_file, v);
		case OPT_STATE_DIR:
			return set_string(&a->state_dir, v);
		case OPT_FAILSAFE_GRACE:
			return parse_double(o->name, v, 0, 86400, &a->failsafe_grace);
		case OPT_FAILSAFE_SPEED:
			if (parse_double(o->name, v, 0, 100, &a->host.failsafe_speed) != 0)
				return -1;
			a->settings.failsafe_speed = a->host.failsafe_speed;
			return 0;
		case OPT_EMERGENCY_TEMP:
			if (parse_double(o->name, v, 20, 150, &a->host.emergency_temp) != 0)
				return -1;
			a->settings.emergency_temp = a->host.emergency_temp;
			return 0;
		case OPT_MIN_SPEED:
			{
				char		err[160];

				if (pk_host_min_speed_parse(&a->host, v, err, sizeof(err)) != 0)
				{
					fprintf(stderr, "pankha-agent: --min-speed: %s\n", err);
					return -1;
				}
				return 0;
			}
		case OPT_PING_INTERVAL:
			return parse_double(o->name, v, 0.1, 3600, &a->ping_interval);
		case OPT_RECONNECT_MIN:
			return parse_double(o->name, v, 0.01, 3600, &a->reconnect_min);
		case OPT_RECONNECT_MAX:
			return parse_double(o->name, v, 0.01, 86400, &a->reconnect_max);
		case OPT_FALLBACK_AFTER:
			if (parse_double(o->name, v, 1, 1000, &d) != 0)
				return -1;
			a->fallback_after = (int) d;
			return 0;
		case OPT_DEFLATE:
			return parse_bool(o->name, v, &a->deflate);
		case OPT_STATUS_INTERVAL:
			return parse_double(o->name, v, 1, 86400, &a->status_interval);
		case OPT_ENROLL:
			return set_string(&a->enroll_url, v);
		case OPT_ENROLLMENT_KEY:
			return set_string(&a->enrollment_key, v);
		case OPT_ENROLLMENT_KEY_FILE:
			return set_string(&a->enrollment_key_file, v);
		case OPT_SIMULATE:
			return set_string(&a->simulate_dir, v);
		case OPT_SIMULATE_ONLY:
			return parse_bool(o->name, v, &a->simulate_only);
		case OPT_SIM_ONCE:
			return parse_bool(o->name, v, &a->sim_once);
		case OPT_SIM_SEED:
			if (parse_double(o->name, v, 0, 4294967295.0, &d) != 0)
				return -1;
			a->sim_seed = (unsigned) d;
			return 0;
		case OPT_LOG_LEVEL:
			lvl = pk_log_level_parse(v);
			if (lvl < 0)
			{
				fprintf(stderr, "pankha-agent: --log-level: \"%s\" is not error, warning, info or debug\n", v);
				return -1;
			}
			a->settings.log_level = lvl;
			pk_log_level = lvl;
			return 0;
	}
	return 0;
}

static const struct opt_def *
find_opt(const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opt_defs[i].name, name) == 0)
			return &opt_defs[i];
	return NULL;
}

/* Read "name = value" lines; a missing default file is fine. */
static int
load_config(struct pk_agent *a, const char *path, bool must_exist)
{
	char	   *text = pk_read_text(path, 1024 * 1024, NULL);
	char	   *line,
			   *save = NULL;
	int			lineno = 0;

	if (!text)
	{
		if (errno == ENOENT && !must_exist)
			return 0;
		fprintf(stderr, "pankha-agent: cannot read config file %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		char	   *key,
				   *val,
				   *end;
		const struct opt_def *o;

		lineno++;
		while (isspace((unsigned char) *line))
			line++;
		if (!*line || *line == '#' || *line == ';')
			continue;
		key = line;
		val = key + strcspn(key, "= \t");
		if (*val)
		{
			*val++ = '\0';
			val += strspn(val, "= \t");
		}
		end = val + strlen(val);
		while (end > val && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (end - val >= 2 && (*val == '"' || *val == '\'') && end[-1] == *val)
		{
			end[-1] = '\0';
			val++;
		}
		o = find_opt(key);
		if (!o || o->id == OPT_HELP || o->id == OPT_VERSION || o->id == OPT_CONFIG)
		{
			fprintf(stderr, "pankha-agent: %s:%d: unknown setting \"%s\"\n", path, lineno, key);
			free(text);
			return -1;
		}
		if (set_option(a, o, o->has_arg ? val : (*val ? val : NULL)) != 0)
		{
			fprintf(stderr, "pankha-agent: (in %s:%d)\n", path, lineno);
			free(text);
			return -1;
		}
	}
	free(text);
	return 0;
}

static void
env_name(char *out, size_t len, const char *name)
{
	size_t		n = (size_t) snprintf(out, len, "PANKHA_AGENT_");

	for (; *name && n + 1 < len; name++)
		out[n++] = *name == '-' ? '_' : (char) toupper((unsigned char) *name);
	out[n] = '\0';
}

/*
 * Secrets on the command line are readable by every user of the host (ps,
 * /proc/PID/cmdline; review L11).  They still work, for compatibility, but
 * the agent says so and overwrites them in its argv as soon as it has
 * copied them, which shortens the time they show.  Files are the way:
 * --token-file, --enrollment-key-file (or a line in the config file).
 */
static void
hide_secrets(int argc, char **argv)
{
	static const char *const secret[] = {"--token", "--enrollment-key"};

	for (int i = 1; i < argc; i++)
		for (size_t k = 0; k < sizeof(secret) / sizeof(secret[0]); k++)
		{
			size_t		n = strlen(secret[k]);
			char	   *value = NULL;

			if (strncmp(argv[i], secret[k], n) != 0)
				continue;
			if (argv[i][n] == '=')
				value = argv[i] + n + 1;
			else if (argv[i][n] == '\0' && i + 1 < argc)
				value = argv[i + 1];
			else
				continue;
			pk_log(PK_LOG_WARN, "%s on the command line can be read by every user of this host; "
				   "use %s-file", secret[k], secret[k]);
			for (char *c = value; *c; c++)
				*c = 'x';
		}
}

/* Read a one-line secret file into *out; -1 (message printed) on error. */
static int
read_secret_file(const char *what, const char *path, char **out)
{
	char	   *text = pk_read_text(path, 4096, NULL);
	size_t		n;

	if (!text)
	{
		fprintf(stderr, "pankha-agent: cannot read the %s from %s: %s\n", what, path, strerror(errno));
		return -1;
	}
	n = strcspn(text, "\r\n");
	text[n] = '\0';
	if (n == 0)
	{
		fprintf(stderr, "pankha-agent: %s file %s is empty\n", what, path);
		free(text);
		return -1;
	}
	free(*out);
	*out = text;
	return 0;
}

/* Defaults, then config file, environment and flags; 0 ok, 1 error, 2 exit 0. */
static int
configure(struct pk_agent *a, int argc, char **argv)
{
	struct option longopts[NOPTS + 1];
	const char *config = getenv("PANKHA_AGENT_CONFIG");
	bool		explicit_config = config != NULL;
	char		host[256] = "localhost";
	int			c;

	pk_settings_defaults(&a->settings);
	pk_host_limits_defaults(&a->host);
	a->buffer_seconds = 3600;
	a->buffer_max_bytes = 32u * 1024 * 1024;
	a->failsafe_grace = 60;
	a->ping_interval = 30;
	a->reconnect_min = 1;
	a->reconnect_max = 60;
	a->fallback_after = 3;
	a->status_interval = 60;
	a->sim_seed = 1;
	/*
	 * On by default: what the server sends compressed is inflated by
	 * inflate.c with zlib, not by lws 4.1.6's inflater, which a hostile
	 * server could abort (security review L13).
	 */
	a->deflate = true;
	gethostname(host, sizeof(host) - 1);
	host[PK_ID_MAX] = '\0';
	if (set_string(&a->server_url, "ws://127.0.0.1:8080") || set_string(&a->agent_id, host) ||
		set_string(&a->token_file, "/etc/pankha/agent.token") || set_string(&a->sysfs_root, "/sys") ||
		set_string(&a->proc_root, "/proc") || set_string(&a->disk_path, "/") ||
		set_string(&a->state_dir, "/var/lib/pankha"))
		return 1;

	for (size_t i = 0; i < NOPTS; i++)
		longopts[i] = (struct option)
	{
		opt_defs[i].name, opt_defs[i].has_arg ? required_argument : no_argument, NULL, opt_defs[i].id
	};
	longopts[NOPTS] = (struct option)
	{
		NULL, 0, NULL, 0
	};

	/* The config file comes first, so find it before the other flags. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		if (c == OPT_CONFIG)
		{
			config = optarg;
			explicit_config = true;
		}
	if (load_config(a, config ? config : DEFAULT_CONFIG, explicit_config) != 0)
		return 1;

	for (size_t i = 0; i < NOPTS; i++)
	{
		char		env[64];
		const char *v;

		if (opt_defs[i].id == OPT_HELP || opt_defs[i].id == OPT_VERSION || opt_defs[i].id == OPT_CONFIG)
			continue;
		env_name(env, sizeof(env), opt_defs[i].name);
		if ((v = getenv(env)) != NULL && set_option(a, &opt_defs[i], opt_defs[i].has_arg ? v : (*v ? v : NULL)) != 0)
		{
			fprintf(stderr, "pankha-agent: (from %s)\n", env);
			return 1;
		}
	}

	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		const struct opt_def *o = NULL;

		if (c == '?')
		{
			fprintf(stderr, "Try 'pankha-agent --help'.\n");
			return 1;
		}
		if (c == OPT_HELP)
		{
			usage(stdout);
			return 2;
		}
		if (c == OPT_VERSION)
		{
			printf("pankha-agent %s\n", PK_AGENT_VERSION);
			return 2;
		}
		for (size_t i = 0; i < NOPTS; i++)
			if (opt_defs[i].id == c)
				o = &opt_defs[i];
		if (o && set_option(a, o, optarg) != 0)
			return 1;
	}
	if (optind < argc)
	{
		fprintf(stderr, "pankha-agent: unexpected argument \"%s\"\n", argv[optind]);
		return 1;
	}
	hide_secrets(argc, argv);
	{
		char		env[64];

		env_name(env, sizeof(env), "token");
		if (getenv(env))
			pk_log(PK_LOG_WARN, "the token comes from %s, which the service manager may show; "
				   "prefer --token-file", env);
		env_name(env, sizeof(env), "enrollment-key");
		if (getenv(env))
			pk_log(PK_LOG_WARN, "the enrollment key comes from %s, which the service manager may show; "
				   "prefer --enrollment-key-file", env);
	}
	if (a->reconnect_max < a->reconnect_min)
	{
		fprintf(stderr, "pankha-agent: --reconnect-max is below --reconnect-min\n");
		return 1;
	}
	return 0;
}

/* Read the token file when no token was given. */
static int
load_token(struct pk_agent *a)
{
	char	   *text;
	size_t		n;

	if (a->token && *a->token)
		return 0;
	text = pk_read_text(a->token_file, 4096, NULL);
	if (!text)
	{
		fprintf(stderr, "pankha-agent: no token: give --token or --token-file (cannot read %s: %s), "
				"or enroll with --enroll\n", a->token_file, strerror(errno));
		return -1;
	}
	n = strcspn(text, "\r\n");
	text[n] = '\0';
	if (n == 0)
	{
		fprintf(stderr, "pankha-agent: token file %s is empty\n", a->token_file);
		free(text);
		return -1;
	}
	free(a->token);
	a->token = text;
	return 0;
}

static void
on_sim_signal(int sig)
{
	sim_stop = sig;
}

/* --simulate-only: animate the tree until a signal arrives. */
static int
run_simulator(struct pk_agent *a)
{
	struct pk_sim *s;
	struct sigaction sa;

	if (a->sim_once)
	{
		if (pk_sim_create(a->simulate_dir, a->sim_seed) != 0)
		{
			pk_log(PK_LOG_ERROR, "cannot write a simulated tree in %s: %s", a->simulate_dir, strerror(errno));
			return 1;
		}
		return 0;
	}
	s = pk_sim_open(a->simulate_dir, a->sim_seed);
	if (!s)
	{
		pk_log(PK_LOG_ERROR, "cannot simulate in %s: %s", a->simulate_dir, strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sim_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pk_log(PK_LOG_INFO, "simulating a machine under %s", a->simulate_dir);
	while (!sim_stop)
	{
		struct timespec ts = {1, 0};

		pk_sim_step(s, 1.0);
		nanosleep(&ts, NULL);
	}
	pk_sim_free(s);
	return 0;
}

int
main(int argc, char **argv)
{
	struct pk_agent agent;
	struct pk_agent *a = &agent;
	int			rc;

	memset(a, 0, sizeof(*a));
	a->buf.fd = -1;				/* no buffer file open yet (pk_buffer_close at out) */
	a->started_ms = pk_mono_ms();
	rc = configure(a, argc, argv);
	if (rc)
	{
		rc = rc == 2 ? 0 : 1;
		goto out;
	}

	if (a->simulate_dir && a->simulate_only)
	{
		rc = run_simulator(a);
		goto out;
	}
	if (a->simulate_dir)
	{
		a->sim = pk_sim_open(a->simulate_dir, a->sim_seed);
		if (!a->sim)
		{
			pk_log(PK_LOG_ERROR, "cannot simulate in %s: %s", a->simulate_dir, strerror(errno));
			rc = 1;
			goto out;
		}
		set_string(&a->sysfs_root, a->simulate_dir);
		/* A simulated machine's fans are not the host's: keep their modes with them. */
		if (a->state_dir && strcmp(a->state_dir, "/var/lib/pankha") == 0)
			set_string(&a->state_dir, a->simulate_dir);
	}
	rc = 1;						/* until the link runs */
	if (a->enrollment_key_file &&
		read_secret_file("enrollment key", a->enrollment_key_file, &a->enrollment_key) != 0)
		goto out;
	if (a->enroll_url && !a->enrollment_key)
	{
		fprintf(stderr, "pankha-agent: --enroll needs --enrollment-key-file (or --enrollment-key)\n");
		goto out;
	}
	if (!a->enroll_url && load_token(a) != 0)
		goto out;
	srandom((unsigned) (pk_now_ms() ^ getpid()));

	if (pk_hw_init(&a->hw, a->sysfs_root) != 0 || pk_hw_scan(&a->hw) != 0)
		goto out;
	if (!a->enroll_url)
		pk_fanmodes_load(a);
	pk_proc_init(&a->proc, a->proc_root, a->disk_path);
	/*
	 * --buffer-seconds of frames at the shortest interval the protocol
	 * allows (0.5 s), and frames older than that go: an interval the
	 * server changes later then never shrinks the buffer (review L3).
	 */
	if (pk_buffer_init(&a->buf, (size_t) pk_ceil(a->buffer_seconds / 0.5),
					   a->buffer_max_bytes, a->buffer_file) != 0)
		goto out;
	a->buf.max_age_ms = (int64_t) (a->buffer_seconds * 1000);
	if (pk_link_create(a) != 0)
		rc = 1;
	else if (a->enroll_url)
		rc = pk_link_enroll(a);
	else
		rc = pk_link_run(a);

	/* Fans first: whatever else fails, give them back. */
	pk_control_restore(a);
out:
	/* every way out frees what configure() and the start made (LSan checks) */
	pk_link_destroy(a);
	pk_buffer_close(&a->buf);
	pk_hw_free(&a->hw);
	free(a->hw.hwmon_dir);
	free(a->hw.signature);
	pk_proc_free(&a->proc);
	pk_recent_free(a);
	pk_sim_free(a->sim);
	free(a->limits);
	pk_host_limits_free(&a->host);
	free(a->server_url);
	free(a->agent_id);
	free(a->agent_name);
	free(a->token);
	free(a->token_file);
	free(a->ca_file);
	free(a->sysfs_root);
	free(a->proc_root);
	free(a->disk_path);
	free(a->buffer_file);
	free(a->state_dir);
	pk_fanmodes_free(a);
	free(a->enroll_url);
	free(a->enrollment_key);
	free(a->enrollment_key_file);
	free(a->simulate_dir);
	return rc;
}
