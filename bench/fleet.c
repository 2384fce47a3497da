/*
 * fleet.c - a fleet of simulated agents in one process, for the bridge
 * benchmark (bench/fleet-bench runs it).
 *
 * Each agent is a libwebsockets client connection to /ws/agent that sends
 * a data frame (with seq) every --interval ms, answers commands with
 * command_ack at once and records when each command arrived.  At the end
 * it prints one JSON object: agents connected, frames sent and acked (and
 * those sent on a connection that closed before their ack), and
 * the bytes its sockets carried each way (TCP_INFO bytes_received and
 * bytes_acked: WebSocket bytes on the wire, compressed or not, without
 * TCP/IP headers), over the steady phase.  Command arrivals go to
 * --commands-out as "command_id<TAB>epoch microseconds" lines.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <sys/socket.h>
#include <sys/resource.h>

#include <libwebsockets.h>
#include <ev.h>
#include <cjson/cJSON.h>

/* One simulated agent. */
struct sim
{
	struct lws *wsi;
	char		id[48];
	char	   *token;
	int			index;
	bool		connected;
	bool		ever_connected;
	bool		attempted;		/* a connect was started */
	int64_t		seq;			/* last seq sent */
	int64_t		acked;			/* highest seq acked */
	int64_t		unacked_closed;	/* frames sent on connections that closed before their ack */
	lws_usec_t	next_send;		/* when the next frame is due */
	char	   *pending;		/* a command_ack to send, or NULL */
	int			reconnects;
};

static struct
{
	const char *host;
	int			port;
	int			agents;
	int			interval_ms;
	int			duration_s;
	int			connect_rate;	/* connection attempts per second */
	bool		deflate;
	const char *tokens;			/* file: "agent_id token" per line */
	const char *commands_out;
	int			sensors;
	int			fans;
	int			ack_wait_s;		/* how long to wait for the last acks */
}			opt = {"127.0.0.1", 8080, 100, 3000, 30, 1000, true, NULL, NULL, 8, 3, 60};

static struct lws_context *ctx;
static struct sim *sims;
static int	nsims;
static int	next_connect;
static int	connected_now;
static int	connected_max;
static uint64_t frames_sent, acks_received, commands_received, errors_received;
static FILE *commands_file;
static volatile sig_atomic_t stop;
static ev_timer tick_timer;
static lws_usec_t started, sending_until;

/* the offer is --deflate-offer; lws' client keeps its context unless told not to */
static struct lws_extension client_exts[] = {
	{"permessage-deflate", lws_extension_callback_pm_deflate,
	"permessage-deflate; client_max_window_bits"},
	{NULL, NULL, NULL}
};

static lws_usec_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (lws_usec_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
real_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

static void
connect_sim(struct sim *s)
{
	struct lws_client_connect_info i;
	char		path[96];

	s->attempted = true;
	snprintf(path, sizeof(path), "/ws/agent?agent_id=%s", s->id);
	memset(&i, 0, sizeof(i));
	i.context = ctx;
	i.address = opt.host;
	i.port = opt.port;
	i.path = path;
	i.host = opt.host;
	i.origin = opt.host;
	i.protocol = NULL;
	i.userdata = s;
	i.pwsi = &s->wsi;
	i.local_protocol_name = "fleet";
	if (!lws_client_connect_via_info(&i))
		s->wsi = NULL;
}

/* A data frame with slowly changing values, as an agent would send. */
static int
build_frame(struct sim *s, char *buf, size_t len)
{
	int64_t		ts = real_us() / 1000;
	size_t		n;
	int			k;

	n = (size_t) snprintf(buf, len, "{\"type\":\"data\",\"data\":{\"agentId\":\"%s\",\"timestamp\":%lld,"
						  "\"seq\":%lld,\"sensors\":[", s->id, (long long) ts, (long long) s->seq);
	for (k = 0; k < opt.sensors && n < len; k++)
		n += (size_t) snprintf(buf + n, len - n,
							   "%s{\"id\":\"temp%d\",\"temperature\":%.1f,\"type\":\"%s\",\"max_temp\":85,\"crit_temp\":95}",
							   k ? "," : "", k, 40.0 + k + (double) ((s->seq + k) % 5) * 0.5,
							   k == 0 ? "cpu" : "motherboard");
	if (n < len)
		n += (size_t) snprintf(buf + n, len - n, "],\"fans\":[");
	for (k = 0; k < opt.fans && n < len; k++)
		n += (size_t) snprintf(buf + n, len - n,
							   "%s{\"id\":\"fan%d\",\"speed\":%d,\"rpm\":%d,\"targetSpeed\":%d,\"status\":\"ok\"}",
							   k ? "," : "", k, 50 + k, 1200 + (int) (s->seq % 7) * 10 + k, 50 + k);
	if (n < len)
		n += (size_t) snprintf(buf + n, len - n,
							   "],\"systemHealth\":{\"cpuUsage\":%.1f,\"memoryUsage\":45.2,\"agentUptime\":%lld}}}",
							   20.0 + (double) (s->seq % 10), (long long) (s->seq * opt.interval_ms / 1000));
	return n < len ? (int) n : -1;
}

static void
on_message(struct sim *s, const char *text, size_t len)
{
	cJSON	   *m = cJSON_ParseWithLength(text, len);
	const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "type"));
	cJSON	   *data = cJSON_GetObjectItemCaseSensitive(m, "data");

	if (!type)
		goto out;
	if (!strcmp(type, "ack"))
	{
		cJSON	   *seq = cJSON_GetObjectItemCaseSensitive(data, "seq");

		acks_received++;
		if (cJSON_IsNumber(seq) && (int64_t) seq->valuedouble > s->acked)
			s->acked = (int64_t) seq->valuedouble;
	}
	else if (!strcmp(type, "command") || (!strcmp(type, "config_update") &&
										  cJSON_GetObjectItemCaseSensitive(data, "command_id")))
	{
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "command_id"));
		char		buf[256];

		if (!id)
			goto out;
		commands_received++;
		if (commands_file)
			fprintf(commands_file, "%s\t%lld\n", id, (long long) real_us());
		snprintf(buf, sizeof(buf),
				 "{\"type\":\"command_ack\",\"data\":{\"command_id\":\"%.64s\",\"success\":true,\"error\":null}}", id);
		free(s->pending);
		s->pending = strdup(buf);
		if (s->wsi)
			lws_callback_on_writable(s->wsi);
	}
	else if (!strcmp(type, "error"))
		errors_received++;
out:
	cJSON_Delete(m);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct sim *s = user;
	unsigned char buf[LWS_PRE + 4096];

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			{
				unsigned char **p = in, *end = (*p) + len;
				char		v[160];

				snprintf(v, sizeof(v), "Bearer %s", s->token);
				if (lws_add_http_header_by_name(wsi, (const unsigned char *) "authorization:",
												(const unsigned char *) v, (int) strlen(v), p, end))
					return -1;
				break;
			}
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			s->connected = true;
			s->ever_connected = true;
			connected_now++;
			if (connected_now > connected_max)
				connected_max = connected_now;
			/* spread the first frames over one interval */
			s->next_send = mono_us() + (lws_usec_t) (rand() % opt.interval_ms) * 1000;
			break;
		case LWS_CALLBACK_CLIENT_RECEIVE:
			on_message(s, in, len);
			break;
		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (s->pending)
			{
				size_t		n = strlen(s->pending);

				memcpy(buf + LWS_PRE, s->pending, n);
				free(s->pending);
				s->pending = NULL;
				if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT) < (int) n)
					return -1;
				lws_callback_on_writable(wsi);
				break;
			}
			if (mono_us() >= s->next_send && mono_us() < sending_until)
			{
				int			n;

				s->seq++;
				n = build_frame(s, (char *) buf + LWS_PRE, sizeof(buf) - LWS_PRE);
				if (n < 0 || lws_write(wsi, buf + LWS_PRE, (size_t) n, LWS_WRITE_TEXT) < n)
					return -1;
				frames_sent++;
				s->next_send += (lws_usec_t) opt.interval_ms * 1000;
			}
			break;
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			if (s && s->reconnects < 1)
				fprintf(stderr, "fleet: %s: %s\n", s->id, in ? (const char *) in : "connection error");
			/* fall through */
		case LWS_CALLBACK_CLIENT_CLOSED:
			if (s)
			{
				if (s->connected)
					connected_now--;
				/*
				 * frames sent on this connection and not acked: the next
				 * connection's acks (seq goes on) do not cover them
				 */
				if (s->seq > s->acked)
				{
					s->unacked_closed += s->seq - s->acked;
					s->acked = s->seq;
				}
				s->connected = false;
				s->wsi = NULL;
				s->reconnects++;
			}
			break;
		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"fleet", callback, 0, 4096, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* Every 10 ms: open more connections at --connect-rate, poke agents due to send. */
static void
tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	lws_usec_t	now = mono_us();
	int			want = (int) ((now - started) * opt.connect_rate / 1000000) + 1;

	while (next_connect < nsims && next_connect < want)
		connect_sim(&sims[next_connect++]);
	/* retry the ones that failed or dropped, a few at a time */
	for (int i = 0, budget = 20; i < next_connect && budget > 0; i++)
		if (!sims[i].wsi && sims[i].attempted && sims[i].reconnects < 5 && now < sending_until)
		{
			connect_sim(&sims[i]);
			budget--;
		}
	for (int i = 0; i < next_connect; i++)
		if (sims[i].connected && sims[i].wsi && now >= sims[i].next_send && now < sending_until)
			lws_callback_on_writable(sims[i].wsi);
	/* and let lws run whatever of its own timers are due */
	lws_cancel_service(ctx);
}

/* Bytes carried by every open agent socket so far (TCP payload). */
static void
wire_bytes(unsigned long long *in, unsigned long long *out)
{
	*in = *out = 0;
	for (int i = 0; i < nsims; i++)
	{
		struct tcp_info ti;
		socklen_t	len = sizeof(ti);
		int			fd;

		if (!sims[i].connected || !sims[i].wsi)
			continue;
		fd = (int) lws_get_socket_fd(sims[i].wsi);
		memset(&ti, 0, sizeof(ti));
		if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
			continue;
		*in += ti.tcpi_bytes_received;
		*out += ti.tcpi_bytes_acked;
	}
}

static void
on_signal(int sig)
{
	stop = 1;
}

static void
usage(void)
{
	printf("Usage: fleet [OPTION]...\n"
		   "  --host=HOST          bridge address (default 127.0.0.1)\n"
		   "  --port=PORT          bridge port (default 8080)\n"
		   "  --tokens=FILE        \"agent_id token\" per line; one simulated agent each (required)\n"
		   "  --agents=N           use the first N lines (default 100)\n"
		   "  --interval=MS        milliseconds between frames (default 3000)\n"
		   "  --duration=S         seconds of sending after the last connect (default 30)\n"
		   "  --connect-rate=N     connection attempts per second (default 1000)\n"
		   "  --deflate=on|off     offer permessage-deflate (default on)\n"
		   "  --deflate-offer=S    the offer (default \"permessage-deflate; client_max_window_bits\")\n"
		   "  --sensors=N --fans=N per frame (default 8 and 3)\n"
		   "  --ack-wait=S         after sending, wait up to S seconds for the last acks (default 60)\n"
		   "  --commands-out=FILE  record command arrivals (default: none)\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"tokens", 1, 0, 't'}, {"agents", 1, 0, 'n'},
		{"interval", 1, 0, 'i'}, {"duration", 1, 0, 'd'}, {"connect-rate", 1, 0, 'r'},
		{"deflate", 1, 0, 'z'}, {"commands-out", 1, 0, 'c'}, {"sensors", 1, 0, 's'},
		{"fans", 1, 0, 'f'}, {"ack-wait", 1, 0, 'w'}, {"deflate-offer", 1, 0, 'o'},
		{"help", 0, 0, 'H'}, {0, 0, 0, 0}
	};
	struct lws_context_creation_info info;
	struct ev_loop *loop;
	void	   *foreign_loops[1];
	unsigned long long rs = 0, ws = 0, r1 = 0, w1 = 0;
	lws_usec_t	steady_from, steady_to;
	bool		steady_started = false, steady_done = false;
	FILE	   *tf;
	char		line[512];
	int			ch;
	uint64_t	acked_total = 0,
				unacked_closed_total = 0;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (ch)
		{
			case 'h': opt.host = optarg; break;
			case 'p': opt.port = atoi(optarg); break;
			case 't': opt.tokens = optarg; break;
			case 'n': opt.agents = atoi(optarg); break;
			case 'i': opt.interval_ms = atoi(optarg); break;
			case 'd': opt.duration_s = atoi(optarg); break;
			case 'r': opt.connect_rate = atoi(optarg); break;
			case 'z': opt.deflate = strcmp(optarg, "off") != 0; break;
			case 'c': opt.commands_out = optarg; break;
			case 's': opt.sensors = atoi(optarg); break;
			case 'f': opt.fans = atoi(optarg); break;
			case 'w': opt.ack_wait_s = atoi(optarg); break;
			case 'o': client_exts[0].client_offer = optarg; break;
			case 'H': usage(); return 0;
			default: usage(); return 2;
		}
	}
	if (!opt.tokens || opt.agents <= 0 || opt.interval_ms <= 0 || opt.connect_rate <= 0)
	{
		usage();
		return 2;
	}
	sims = calloc((size_t) opt.agents, sizeof(*sims));
	tf = fopen(opt.tokens, "r");
	if (!sims || !tf)
	{
		fprintf(stderr, "fleet: cannot read %s\n", opt.tokens);
		return 1;
	}
	while (nsims < opt.agents && fgets(line, sizeof(line), tf))
	{
		char		id[48], tok[256];

		if (sscanf(line, "%47s %255s", id, tok) != 2)
			continue;
		snprintf(sims[nsims].id, sizeof(sims[nsims].id), "%s", id);
		sims[nsims].token = strdup(tok);
		sims[nsims].index = nsims;
		nsims++;
	}
	fclose(tf);
	if (opt.commands_out && !(commands_file = fopen(opt.commands_out, "w")))
	{
		fprintf(stderr, "fleet: cannot write %s\n", opt.commands_out);
		return 1;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	/*
	 * epoll through libev, and no fd_limit_per_thread: with lws' default
	 * poll() loop most of the generator's CPU went to the kernel polling
	 * every socket on each wakeup, and fd_limit_per_thread makes lws look
	 * each socket up by a linear scan.  lws sizes its fd table from
	 * RLIMIT_NOFILE instead, so raise that to the hard limit.
	 */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
		{
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop)
		return 1;
	foreign_loops[0] = loop;
	info.foreign_loops = foreign_loops;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_LIBEV;
	info.timeout_secs = 30;
	if (opt.deflate)
		info.extensions = client_exts;
	ctx = lws_create_context(&info);
	if (!ctx)
		return 1;

	started = mono_us();
	/* sending runs until duration after the last agent's connect attempt */
	sending_until = started + (lws_usec_t) nsims * 1000000 / opt.connect_rate +
		(lws_usec_t) opt.duration_s * 1000000;
	steady_from = started + (lws_usec_t) nsims * 1000000 / opt.connect_rate +
		(lws_usec_t) opt.interval_ms * 1000 * 2;
	steady_to = sending_until;
	/* our own libev timer: lws 4.1.6's libev timer can miss re-armed deadlines */
	ev_timer_init(&tick_timer, tick, 0.0, 0.010);
	ev_timer_start(loop, &tick_timer);
	while (!stop && mono_us() < sending_until + (lws_usec_t) opt.ack_wait_s * 1000000)
	{
		lws_usec_t	now = mono_us();

		if (!steady_started && now >= steady_from)
		{
			wire_bytes(&rs, &ws);
			steady_started = true;
		}
		if (steady_started && !steady_done && now >= steady_to)
		{
			wire_bytes(&r1, &w1);
			steady_done = true;
		}
		ev_run(loop, EVRUN_ONCE);
		if (now >= sending_until)
		{
			/* wait for the last acks, then stop */
			bool		all = true;

			for (int i = 0; i < nsims && all; i++)
				if (sims[i].connected && sims[i].acked < sims[i].seq)
					all = false;
			if (all)
				break;
		}
	}
	if (!steady_done)
		wire_bytes(&r1, &w1);
	for (int i = 0; i < nsims; i++)
	{
		acked_total += (uint64_t) (sims[i].acked > 0 ? sims[i].acked - sims[i].unacked_closed : 0);
		unacked_closed_total += (uint64_t) sims[i].unacked_closed;
	}
	{
		double		steady_s = (double) (steady_to - steady_from) / 1e6;
		int			ever = 0;

		for (int i = 0; i < nsims; i++)
			ever += sims[i].ever_connected;
		printf("{\"agents\":%d,\"connected_max\":%d,\"connected_end\":%d,\"ever_connected\":%d,"
			   "\"frames_sent\":%llu,\"frames_acked\":%llu,\"frames_unacked_closed\":%llu,\"acks\":%llu,\"errors\":%llu,"
			   "\"commands\":%llu,\"deflate\":%s,"
			   "\"steady_seconds\":%.1f,\"steady_bytes_in\":%llu,\"steady_bytes_out\":%llu}\n",
			   nsims, connected_max, connected_now, ever,
			   (unsigned long long) frames_sent, (unsigned long long) acked_total,
			   (unsigned long long) unacked_closed_total,
			   (unsigned long long) acks_received, (unsigned long long) errors_received,
			   (unsigned long long) commands_received, opt.deflate ? "true" : "false",
			   steady_s, steady_started ? r1 - rs : 0, steady_started ? w1 - ws : 0);
	}
	if (commands_file)
		fclose(commands_file);
	ev_timer_stop(loop, &tick_timer);
	lws_context_destroy(ctx);
	ev_run(loop, EVRUN_NOWAIT);
	ev_loop_destroy(loop);
	return 0;
}
