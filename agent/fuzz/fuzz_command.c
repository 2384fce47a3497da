/*
 * fuzz_command.c - libFuzzer target: what the bridge sends to an agent.
 *
 * Each line of an input is one message from the server, handed to the
 * agent's handle_message() (this file includes link.c for it): commands
 * run against a simulated machine (sim.c's tree, made once under
 * $PANKHA_FUZZ_DIR, /dev/shm or /tmp), config_update changes the settings, acks release
 * buffered frames, errors slow the link down.  After each message the
 * control loop ticks once, so fuzzed profiles and limits are evaluated.
 * Each input gets a fresh agent on the same tree (the one scan of it
 * copied back, as the scan left it), torn down at the end as main.c does; every command_ack queued must be a JSON object naming a
 * command_id and a boolean success, and after the teardown every fan the
 * agent touched is back in its original mode.  No lws context exists:
 * the link has no socket, and lws_sul_schedule (a config_update moving the
 * next tick) is taken over at link time by the function below.
 */
#include "../link.c"

#include <sys/stat.h>

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void		__wrap_lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul,
									sul_cb_t cb, lws_usec_t us);

static char tree[256];
static struct pk_hw hw;			/* scanned once; each input starts from it */
static struct pk_fan *fans0;	/* the fans as the scan left them */
static struct pk_sensor *sensors0;

void
__wrap_lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul,
						sul_cb_t cb, lws_usec_t us)
{
	if (ctx || !sul || !cb)
		abort();				/* only the tick, with no context here */
}

static void
remove_tree(void)
{
	char		cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tree);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tree);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct stat st;

	/* under $PANKHA_FUZZ_DIR when set (the test's own directory), else in memory */
	snprintf(tree, sizeof(tree), "%s/pankha-fuzz-agent.XXXXXX",
			 getenv("PANKHA_FUZZ_DIR") ? getenv("PANKHA_FUZZ_DIR") :
			 stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
	if (!mkdtemp(tree) || pk_sim_create(tree, 7) != 0)
	{
		fprintf(stderr, "cannot make the simulated tree in %s\n", tree);
		exit(1);
	}
	atexit(remove_tree);
	/* scanning per input would be most of the time: keep the scan, copy its state */
	if (pk_hw_init(&hw, tree) || pk_hw_scan(&hw) < 0 || !hw.nfans ||
		!(fans0 = malloc(sizeof(*fans0) * (size_t) hw.nfans)) ||
		!(sensors0 = malloc(sizeof(*sensors0) * (size_t) (hw.nsensors ? hw.nsensors : 1))))
		exit(1);
	memcpy(fans0, hw.fans, sizeof(*fans0) * (size_t) hw.nfans);
	memcpy(sensors0, hw.sensors, sizeof(*sensors0) * (size_t) hw.nsensors);
	pk_log_level = PK_LOG_ERROR + 1;	/* quiet: the fuzzer's output is its own */
	return 0;
}

/* A queued command_ack: {"command_id": string, "success": bool, ...}. */
static void
check_ack(const char *text)
{
	cJSON	   *ack = cJSON_Parse(text);

	if (!cJSON_IsObject(ack) ||
		!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ack, "command_id")) ||
		!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(ack, "success")))
	{
		fprintf(stderr, "a queued command_ack is not one: %s\n", text);
		abort();
	}
	cJSON_Delete(ack);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pk_agent a;
	struct pk_link l;
	size_t		pos = 0;

	memset(&a, 0, sizeof(a));
	memset(&l, 0, sizeof(l));
	pk_settings_defaults(&a.settings);
	pk_host_limits_defaults(&a.host);
	a.failsafe_grace = 30;
	a.hw = hw;
	memcpy(a.hw.fans, fans0, sizeof(*fans0) * (size_t) hw.nfans);
	memcpy(a.hw.sensors, sensors0, sizeof(*sensors0) * (size_t) hw.nsensors);
	if (pk_buffer_init(&a.buf, 64, 1 << 20, NULL))
		abort();
	for (int64_t seq = 0; seq < 8; seq++)
		if (pk_buffer_push(&a.buf, seq, strdup("{\"sensors\":[],\"fans\":[]}")))
			abort();
	l.a = &a;
	a.link = &l;

	while (pos < size)
	{
		const uint8_t *line = data + pos;
		const uint8_t *nl = memchr(line, '\n', size - pos);
		size_t		len = nl ? (size_t) (nl - line) : size - pos;
		char	   *msg = malloc(len ? len : 1);

		pos += len + 1;
		if (!msg)
			abort();
		memcpy(msg, line, len);
		handle_message(&l, msg, len);
		free(msg);
		pk_control_tick(&a, false);
	}
	for (struct out_msg *m = l.q_head, *next; m; m = next)
	{
		next = m->next;
		if (m->is_ack)
			check_ack(m->text);
		free(m->text);
		free(m);
	}

	pk_control_restore(&a);
	for (int i = 0; i < a.hw.nfans; i++)
	{
		struct pk_fan *f = &a.hw.fans[i];
		long		mode = -1;

		if (f->touched && f->enable_path && pk_read_long(f->enable_path, &mode) == 0 &&
			mode != (f->orig_enable >= 0 ? f->orig_enable : 2))
		{
			fprintf(stderr, "fan %s left in mode %ld\n", f->id, mode);
			abort();
		}
	}
	for (int i = 0; i < a.hw.nfans; i++)
	{
		pk_profile_free(a.hw.fans[i].profile);
		a.hw.fans[i].profile = NULL;
	}
	if (a.hw.fans != hw.fans || a.hw.sensors != hw.sensors)
		abort();				/* nothing here re-scans */
	pk_recent_free(&a);
	free(a.limits);
	pk_host_limits_free(&a.host);
	pk_fanmodes_free(&a);
	pk_buffer_close(&a.buf);
	return 0;
}
