/*
 * unit.c - unit tests of the agent's parts on a simulated hwmon tree and
 * fake /proc files.  Usage: unit SECTION DIR, where SECTION is hwmon,
 * procstat, control, buffer, backoff or sim and DIR an empty scratch directory.
 * Prints TAP.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

static int	tests;
static int	failures;

static bool
ok(bool cond, const char *fmt,...)
{
	va_list		ap;

	tests++;
	printf("%sok %d - ", cond ? "" : "not ", tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!cond)
		failures++;
	return cond;
}

static char *
pathf(const char *fmt,...)
{
	static char buf[4][1024];
	static int	n;
	va_list		ap;
	char	   *b = buf[n++ % 4];

	va_start(ap, fmt);
	vsnprintf(b, sizeof(buf[0]), fmt, ap);
	va_end(ap);
	return b;
}

static void
write_file(const char *path, const char *text)
{
	FILE	   *f = fopen(path, "w");

	if (!f)
	{
		printf("# cannot write %s: %s\n", path, strerror(errno));
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static long
read_num(const char *path)
{
	long		v = -999;

	if (pk_read_long(path, &v) != 0)
		return -999;
	return v;
}

/* ---------------- hwmon ---------------- */

static bool
has_id(struct pk_hw *hw, const char *id, bool fan)
{
	return fan ? pk_hw_fan(hw, id) != NULL : pk_hw_sensor(hw, id) != NULL;
}

static void
test_hwmon(const char *dir)
{
	char	   *root = pathf("%s/sys", dir);
	char		rootc[1024];
	struct pk_hw hw;
	struct pk_sensor *s;
	char		id[PK_ID_MAX + 1];
	char		ids_before[4096] = "",
				ids_after[4096] = "";
	bool		unique = true;

	snprintf(rootc, sizeof(rootc), "%s", root);
	ok(pk_sim_create(rootc, 7) == 0, "simulator writes a tree");
	ok(pk_hw_init(&hw, rootc) == 0 && pk_hw_scan(&hw) == 0, "scan succeeds");
	ok(hw.nsensors >= 20 && hw.nsensors <= 30, "20-30 temperature sensors (%d)", hw.nsensors);
	ok(hw.nfans >= 4 && hw.nfans <= 6, "4-6 fans (%d)", hw.nfans);
	ok(has_id(&hw, "coretemp_package_id_0", false) && has_id(&hw, "coretemp_core_11", false) &&
	   has_id(&hw, "nct6798_systin", false) && has_id(&hw, "nvme_composite", false) &&
	   has_id(&hw, "amdgpu_junction", false), "sensor ids are chip name + label");
	ok(has_id(&hw, "nct6798_fan1", true) && has_id(&hw, "nct6798_fan5", true) &&
	   has_id(&hw, "amdgpu_fan1", true), "fan ids are chip name + index");
	s = pk_hw_sensor(&hw, "coretemp_package_id_0");
	ok(s && s->has_crit && s->crit_temp == 100 && s->has_max && s->max_temp == 80 &&
	   strcmp(s->kind, "cpu") == 0, "max, crit and kind of a coretemp sensor");
	s = pk_hw_sensor(&hw, "nct6798_auxtin0");
	ok(s && !s->has_crit && !s->has_max && strcmp(s->kind, "motherboard") == 0,
	   "a sensor without max/crit files has none");
	ok(pk_hw_fan(&hw, "nct6798_fan1")->pwm_path && pk_hw_fan(&hw, "nct6798_fan1")->enable_path,
	   "fans have pwm and pwm_enable paths");
	pk_hw_read(&hw);
	s = pk_hw_sensor(&hw, "coretemp_package_id_0");
	ok(s->valid && s->temp > 20 && s->temp < 80, "temperature read in degrees (%.1f)", s->temp);
	ok(pk_hw_fan(&hw, "nct6798_fan1")->pwm == 128 && pk_hw_fan(&hw, "nct6798_fan1")->rpm == 900,
	   "pwm and rpm read");
	ok(!pk_hw_changed(&hw), "an unchanged tree is not reported as changed");

	for (int i = 0; i < hw.nsensors; i++)
		for (int j = i + 1; j < hw.nsensors; j++)
			if (strcmp(hw.sensors[i].id, hw.sensors[j].id) == 0)
				unique = false;
	ok(unique, "sensor ids are unique");
	for (int i = 0; i < hw.nsensors; i++)
		snprintf(ids_before + strlen(ids_before), sizeof(ids_before) - strlen(ids_before), "%s,",
				 hw.sensors[i].id);

	/* Renumbering, as after a reboot with another module load order. */
	pk_hw_fan(&hw, "nct6798_fan2")->mode = PK_FAN_MANUAL;
	pk_hw_fan(&hw, "nct6798_fan2")->manual_speed = 55;
	rename(pathf("%s/class/hwmon/hwmon0", rootc), pathf("%s/class/hwmon/hwmon9", rootc));
	rename(pathf("%s/class/hwmon/hwmon1", rootc), pathf("%s/class/hwmon/hwmon0", rootc));
	rename(pathf("%s/class/hwmon/hwmon9", rootc), pathf("%s/class/hwmon/hwmon1", rootc));
	ok(pk_hw_changed(&hw), "renumbered hwmon entries are noticed");
	pk_hw_scan(&hw);
	for (int i = 0; i < hw.nsensors; i++)
		snprintf(ids_after + strlen(ids_after), sizeof(ids_after) - strlen(ids_after), "%s,",
				 hw.sensors[i].id);
	ok(strcmp(ids_before, ids_after) == 0, "ids survive renumbering");
	ok(strstr(pk_hw_sensor(&hw, "coretemp_core_0")->input_path, "hwmon1/") != NULL,
	   "paths follow the renumbered directory");
	ok(pk_hw_fan(&hw, "nct6798_fan2")->mode == PK_FAN_MANUAL &&
	   pk_hw_fan(&hw, "nct6798_fan2")->manual_speed == 55, "a fan keeps its control state across a re-scan");

	/* A second chip with the same name, plus hostile entries. */
	mkdir(pathf("%s/class/hwmon/hwmon4", rootc), 0755);
	write_file(pathf("%s/class/hwmon/hwmon4/name", rootc), "nvme\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp1_input", rootc), "31000\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp1_label", rootc), "Composite\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp2_input", rootc), "not a number\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp3_input.tmp~", rootc), "1\n");
	write_file(pathf("%s/class/hwmon/hwmon4/tempX_input", rootc), "1\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp4_inputs", rootc), "1\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp5_input", rootc), "29000\n");
	write_file(pathf("%s/class/hwmon/hwmon4/temp5_label", rootc),
			   "A very long label with spaces, punctuation!! and more than sixty-four bytes in total\n");
	/* the second nvme sits behind another PCI device than the simulator's */
	mkdir(pathf("%s/devices/0000:02:00.0", rootc), 0755);
	ok(symlink("../../../devices/0000:02:00.0", pathf("%s/class/hwmon/hwmon4/device", rootc)) == 0,
	   "the added nvme gets a device link");
	mkdir(pathf("%s/class/hwmon/hwmon5", rootc), 0755);	/* no name: skipped */
	write_file(pathf("%s/class/hwmon/hwmon5/temp1_input", rootc), "1000\n");
	ok(pk_hw_changed(&hw), "an added chip is noticed");
	pk_hw_scan(&hw);
	pk_hw_read(&hw);
	ok(has_id(&hw, "nvme_composite", false) && has_id(&hw, "nvme_2_composite", false),
	   "two chips of one name get distinct ids (nvme, nvme_2)");
	ok(has_id(&hw, "nvme_2_temp2", false) && !pk_hw_sensor(&hw, "nvme_2_temp2")->valid,
	   "an unlabeled sensor is named by index; a garbage reading is invalid, not a crash");
	ok(hw.nsensors == 27 + 3, "stray files (temp3_input.tmp~, tempX_input, temp4_inputs) and a "
	   "chip without a name are ignored (%d sensors)", hw.nsensors);
	s = NULL;
	for (int i = 0; i < hw.nsensors; i++)
		if (strncmp(hw.sensors[i].id, "nvme_2_a_very_long", 18) == 0)
			s = &hw.sensors[i];
	ok(s && strlen(s->id) <= PK_ID_MAX && s->valid && s->temp == 29, "a long label is cut to %d bytes: %s",
	   PK_ID_MAX, s ? s->id : "(missing)");

	/*
	 * The two nvme chips swap numbers (hwmon2 <-> hwmon4): their ids follow
	 * the devices behind them (0000:01:00.0 stays "nvme"), not the numbers,
	 * which alone would hand each chip's id to the other (audit 11).
	 */
	ok(strstr(pk_hw_sensor(&hw, "nvme_composite")->input_path, "hwmon2/") != NULL &&
	   strstr(pk_hw_sensor(&hw, "nvme_2_composite")->input_path, "hwmon4/") != NULL,
	   "before the swap: nvme is hwmon2 (device 0000:01:00.0), nvme_2 is hwmon4");
	rename(pathf("%s/class/hwmon/hwmon2", rootc), pathf("%s/class/hwmon/hwmon9", rootc));
	rename(pathf("%s/class/hwmon/hwmon4", rootc), pathf("%s/class/hwmon/hwmon2", rootc));
	rename(pathf("%s/class/hwmon/hwmon9", rootc), pathf("%s/class/hwmon/hwmon4", rootc));
	ok(pk_hw_changed(&hw), "two chips of one name swapping numbers is noticed");
	pk_hw_scan(&hw);
	pk_hw_read(&hw);
	ok(strstr(pk_hw_sensor(&hw, "nvme_composite")->input_path, "hwmon4/") != NULL &&
	   strstr(pk_hw_sensor(&hw, "nvme_2_composite")->input_path, "hwmon2/") != NULL &&
	   pk_hw_sensor(&hw, "nvme_2_composite")->valid && pk_hw_sensor(&hw, "nvme_2_composite")->temp == 31,
	   "after the swap each nvme id stays with its device (nvme -> hwmon4, nvme_2 -> hwmon2, 31 C)");

	pk_sanitize_id(id, sizeof(id), "it8686", "  CPU  Fan #1 ");
	ok(strcmp(id, "it8686_cpu_fan_1") == 0, "sanitize: lower case, one underscore between words (%s)", id);
	pk_sanitize_id(id, sizeof(id), "", "");
	ok(strcmp(id, "x") == 0, "sanitize: never empty");

	pk_hw_free(&hw);
	free(hw.hwmon_dir);
	free(hw.signature);
}

/* ---------------- procstat ---------------- */

static void
test_procstat(const char *dir)
{
	unsigned long long total,
				idle,
				rx,
				tx;
	double		v;
	struct pk_proc p;
	char		proc[1024];

	ok(pk_parse_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n", &total, &idle) == 0 &&
	   total == 1000 && idle == 800, "/proc/stat totals (idle includes iowait)");
	ok(pk_parse_stat("intr 1 2\ncpu  1 2 3 4\n", &total, &idle) == 0 && total == 10 && idle == 4,
	   "/proc/stat: the cpu line is found anywhere, short lines accepted");
	ok(pk_parse_stat("garbage", &total, &idle) == -1 && pk_parse_stat("cpu  x", &total, &idle) == -1,
	   "/proc/stat: garbage is an error");
	ok(pk_parse_meminfo("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n", &v) == 0 &&
	   fabs(v - 75) < 1e-9, "meminfo: 75 %% used");
	ok(pk_parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n", &v) == -1 &&
	   pk_parse_meminfo("MemTotal: 10 kB\n", &v) == -1 &&
	   pk_parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n", &v) == -1, "meminfo: bad input is an error");
	ok(pk_parse_netdev("Inter-|   Receive |  Transmit\n face |bytes packets\n"
					   "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n"
					   "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
					   " wlan0:500 5 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n", &rx, &tx) == 0 &&
	   rx == 1500 && tx == 2100, "net/dev: interfaces summed, loopback left out");
	ok(pk_parse_netdev("nonsense", &rx, &tx) == -1, "net/dev: garbage is an error");
	ok(pk_parse_loadavg("0.52 0.40 0.30 1/123 4567\n", &v) == 0 && v == 0.52, "loadavg");
	ok(pk_parse_loadavg("x", &v) == -1 && pk_parse_loadavg("-1", &v) == -1, "loadavg: garbage is an error");

	/* Two samples of a fake /proc give CPU usage and network rates. */
	snprintf(proc, sizeof(proc), "%s/proc", dir);
	mkdir(proc, 0755);
	mkdir(pathf("%s/net", proc), 0755);
	write_file(pathf("%s/stat", proc), "cpu  100 0 100 800 0 0 0 0 0 0\n");
	write_file(pathf("%s/meminfo", proc), "MemTotal: 2000 kB\nMemAvailable: 500 kB\n");
	write_file(pathf("%s/net/dev", proc), "Inter-|\n face |\n  eth0: 1000 0 0 0 0 0 0 0 5000 0 0 0 0 0 0 0\n");
	write_file(pathf("%s/loadavg", proc), "1.25 1.00 0.75 2/300 99\n");
	pk_proc_init(&p, proc, "/");
	pk_proc_sample(&p, 10000);
	ok(p.cpu_usage < 0 && p.rx_rate < 0, "first sample: no CPU usage or rates yet");
	ok(p.mem_usage == 75 && p.load1 == 1.25, "first sample: memory and load");
	ok(p.disk_usage >= 0 && p.disk_usage <= 100, "root filesystem usage %.1f %%", p.disk_usage);
	write_file(pathf("%s/stat", proc), "cpu  200 0 200 900 0 0 0 0 0 0\n");
	write_file(pathf("%s/net/dev", proc), "Inter-|\n face |\n  eth0: 3000 0 0 0 0 0 0 0 5500 0 0 0 0 0 0 0\n");
	pk_proc_sample(&p, 12000);
	ok(fabs(p.cpu_usage - 200.0 / 3) < 1e-6, "CPU usage from deltas (%.2f %%)", p.cpu_usage);
	ok(p.rx_rate == 1000 && p.tx_rate == 250, "network rates from deltas (%.0f/%.0f B/s)", p.rx_rate, p.tx_rate);
	write_file(pathf("%s/stat", proc), "cpu  10 0 10 10 0 0 0 0 0 0\n");	/* counters went back */
	pk_proc_sample(&p, 14000);
	ok(fabs(p.cpu_usage - 200.0 / 3) < 1e-6, "counters going backwards do not give nonsense");
	pk_proc_free(&p);
	pk_proc_init(&p, pathf("%s/missing", dir), pathf("%s/missing", dir));
	pk_proc_sample(&p, 1000);
	ok(p.cpu_usage < 0 && p.mem_usage < 0 && p.load1 < 0 && p.disk_usage < 0,
	   "a missing /proc gives unknown figures, not a crash");
	pk_proc_free(&p);
	ok(pk_self_rss_kb("/proc") > 0, "own RSS from /proc/self/status");
}

/* ---------------- control ---------------- */

static struct pk_agent agent;
static char tree[1024];

static char *
fan_file(const char *fan, const char *what)
{
	/* nct6798 is hwmon1 in the simulator, amdgpu hwmon3 */
	if (strncmp(fan, "amdgpu_fan", 10) == 0)
		return pathf("%s/class/hwmon/hwmon3/%s%s", tree, what, fan + 10);
	return pathf("%s/class/hwmon/hwmon1/%s%s", tree, what, fan + 11);
}

static long
fan_pwm(const char *fan)
{
	char		name[16];

	snprintf(name, sizeof(name), "pwm");
	return read_num(fan_file(fan, name));
}

static long
fan_enable(const char *fan)
{
	char	   *p = fan_file(fan, "pwm");
	char		path[1100];

	snprintf(path, sizeof(path), "%s_enable", p);
	return read_num(path);
}

static void
set_enable(const char *fan, long v)
{
	char	   *p = fan_file(fan, "pwm");
	char		path[1100];

	snprintf(path, sizeof(path), "%s_enable", p);
	pk_write_long(path, v);
}

static void
set_temp(const char *chip_dir, int idx, double c)
{
	pk_write_long(pathf("%s/class/hwmon/%s/temp%d_input", tree, chip_dir, idx), lround(c * 1000));
}

/* Run a command given as JSON text; returns the ack (caller frees). */
static cJSON *
cmd(const char *json)
{
	cJSON	   *data = cJSON_Parse(json);
	cJSON	   *ack;

	if (!data)
	{
		printf("# bad test JSON: %s\n", json);
		exit(2);
	}
	ack = pk_command_handle(&agent, data);
	cJSON_Delete(data);
	return ack;
}

static bool
ack_ok(cJSON *ack)
{
	bool		r = ack && cJSON_IsTrue(cJSON_GetObjectItem(ack, "success")) &&
		cJSON_IsNull(cJSON_GetObjectItem(ack, "error"));

	if (!r && ack)
	{
		char	   *t = cJSON_PrintUnformatted(ack);

		printf("# ack: %s\n", t);
		free(t);
	}
	cJSON_Delete(ack);
	return r;
}

/* True when the ack failed with an error containing want. */
static bool
ack_err(cJSON *ack, const char *want)
{
	cJSON	   *e = cJSON_GetObjectItem(ack, "error");
	bool		r = ack && cJSON_IsFalse(cJSON_GetObjectItem(ack, "success")) && cJSON_IsString(e) &&
		strstr(e->valuestring, want) != NULL;

	printf("# error: %s\n", cJSON_IsString(e) ? e->valuestring : "(none)");
	cJSON_Delete(ack);
	return r;
}

static long
pct(double p)
{
	return lround(p * 255 / 100);
}

static void
test_control(const char *dir)
{
	struct pk_fan *f;
	cJSON	   *ack;
	char		err[256];
	cJSON	   *settings;

	snprintf(tree, sizeof(tree), "%s/sys", dir);
	pk_sim_create(tree, 3);
	memset(&agent, 0, sizeof(agent));
	pk_settings_defaults(&agent.settings);
	pk_hw_init(&agent.hw, tree);
	pk_hw_scan(&agent.hw);
	pk_log_level = PK_LOG_ERROR;
	/* a cool machine */
	for (int i = 1; i <= 13; i++)
		set_temp("hwmon0", i, 45);
	pk_control_tick(&agent, false);
	ok(!agent.emergency && fan_enable("nct6798_fan1") == 2 && fan_pwm("nct6798_fan1") == 128,
	   "fans left to firmware are not written");

	ok(ack_ok(cmd("{\"command_id\":\"c1\",\"command_type\":\"set_fan_speed\","
				  "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":60}}")),
	   "set_fan_speed is acked with success");
	ok(fan_pwm("nct6798_fan1") == 153 && fan_enable("nct6798_fan1") == 1,
	   "set_fan_speed 60 %% writes pwm 153 and pwm_enable 1");

	ack = cmd("{\"command_id\":\"c2\",\"command_type\":\"set_fan_speed\","
			  "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":80}}");
	cJSON_Delete(ack);
	ack = cmd("{\"command_id\":\"c1\",\"command_type\":\"set_fan_speed\","
			  "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":60}}");
	ok(ack_ok(ack) && fan_pwm("nct6798_fan1") == pct(80),
	   "a redelivered command id is acked again but not executed again");
	ack = cmd("{\"command_id\":\"c1\",\"command_type\":\"bogus\"}");
	ok(ack_ok(ack), "the redelivered id answers with the first result, whatever the new body");

	/* hostile: below minimum */
	settings = cJSON_Parse("{\"fans\":{\"nct6798_fan1\":{\"min_speed\":30,\"max_speed\":90}}}");
	ok(pk_settings_apply(&agent, settings, err, sizeof(err)) == 0, "fan limits from config");
	cJSON_Delete(settings);
	ok(ack_err(cmd("{\"command_id\":\"c3\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":10}}"), "below the minimum") &&
	   fan_pwm("nct6798_fan1") == pct(80), "a command below min_speed is refused and changes nothing");
	ok(ack_err(cmd("{\"command_id\":\"c4\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":95}}"), "above the maximum") &&
	   fan_pwm("nct6798_fan1") == pct(80), "a command above max_speed is refused");
	ok(ack_err(cmd("{\"command_id\":\"c5\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan2\",\"speed\":20,\"min_speed\":25}}"),
			   "below the minimum"), "limits given in the command parameters apply to it");
	ok(ack_err(cmd("{\"command_id\":\"c6\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan2\",\"speed\":150}}"), "speed: 150"),
	   "speed out of range names the field");
	ok(ack_err(cmd("{\"command_id\":\"c7\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan2\",\"speed\":\"fast\"}}"), "speed: not a number"),
	   "speed not a number names the field");
	ok(ack_err(cmd("{\"command_id\":\"c8\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"no_such_fan\",\"speed\":50}}"), "no fan \"no_such_fan\""),
	   "an unknown fan is named in the error");
	ok(ack_err(cmd("{\"command_id\":\"c9\",\"command_type\":\"set_fan_speed\",\"parameters\":{}}"),
			   "fan_id: missing"), "a missing fan_id is named");
	ok(ack_err(cmd("{\"command_id\":\"c10\",\"command_type\":\"warp_drive\",\"parameters\":{}}"),
			   "unknown command"), "an unknown command type fails with an error");
	ok(ack_err(cmd("{\"command_id\":\"c11\",\"parameters\":{}}"), "command_type: missing"),
	   "a command without a type fails with an error");
	ok(cmd("{\"command_type\":\"emergency_stop\"}") == NULL && !agent.emergency_stop,
	   "a command without an id is not executed");
	ok(ack_err(cmd("{\"command_id\":\"c12\",\"command_type\":\"set_fan_speed\",\"parameters\":[1]}"),
			   "parameters: not an object"), "parameters must be an object");

	/* overrides by another writer */
	pk_write_long(fan_file("nct6798_fan1", "pwm"), 0);
	pk_control_tick(&agent, false);
	f = pk_hw_fan(&agent.hw, "nct6798_fan1");
	ok(fan_pwm("nct6798_fan1") == pct(80) && f->reasserts == 1, "a pwm overwritten by someone else is re-asserted "
	   "on the next tick and counted");
	set_enable("nct6798_fan1", 2);
	pk_control_tick(&agent, false);
	ok(fan_enable("nct6798_fan1") == 1 && f->reasserts == 2 && agent.reasserts == 2,
	   "a pwm_enable switched back to auto behind our back is re-asserted");
	pk_control_tick(&agent, false);
	ok(f->reasserts == 2 && strcmp(f->status, "ok") == 0, "no false override reports when nothing changed");

	/* hostile: crit temperature during a manual override */
	settings = cJSON_Parse("{\"emergency_temp\":120}");
	pk_settings_apply(&agent, settings, err, sizeof(err));
	cJSON_Delete(settings);
	set_temp("hwmon0", 1, 100);	/* coretemp package at its crit */
	pk_control_tick(&agent, false);
	ok(agent.emergency && fan_pwm("nct6798_fan1") == 255 && fan_pwm("nct6798_fan2") == 255 &&
	   fan_pwm("amdgpu_fan1") == 255 && fan_enable("amdgpu_fan1") == 1,
	   "a sensor at its crit temperature sends every fan to 100 %% (over max_speed, manual or auto)");
	ok(strcmp(pk_hw_fan(&agent.hw, "nct6798_fan1")->status, "emergency") == 0, "fan status says emergency");
	ok(ack_ok(cmd("{\"command_id\":\"c13\",\"command_type\":\"set_fan_speed\","
				  "\"parameters\":{\"fan_id\":\"nct6798_fan1\",\"speed\":40}}")) &&
	   fan_pwm("nct6798_fan1") == 255, "a command during an emergency is accepted but the fan stays at 100 %%");
	set_temp("hwmon0", 1, 50);
	pk_control_tick(&agent, false);
	ok(!agent.emergency && fan_pwm("nct6798_fan1") == pct(40) && fan_enable("amdgpu_fan1") == 2,
	   "after the emergency: manual fans go to their command, auto fans back to firmware");

	/* emergency_temp */
	settings = cJSON_Parse("{\"emergency_temp\":85}");
	pk_settings_apply(&agent, settings, err, sizeof(err));
	cJSON_Delete(settings);
	set_temp("hwmon2", 1, 85);	/* nvme composite (crit 84.85 anyway) */
	set_temp("hwmon3", 1, 86);	/* amdgpu edge, crit 100 */
	set_temp("hwmon2", 1, 40);
	pk_control_tick(&agent, false);
	ok(agent.emergency && fan_pwm("nct6798_fan3") == 255, "a sensor at emergency_temp sends fans to 100 %%");
	set_temp("hwmon3", 1, 40);
	pk_control_tick(&agent, false);
	ok(!agent.emergency, "emergency ends when temperatures drop");

	/* a fan's own emergency temperature (pankha.fans.emergency_temp) */
	settings = cJSON_Parse("{\"fans\":{\"nct6798_fan4\":{\"emergency_temp\":60}}}");
	ok(pk_settings_apply(&agent, settings, err, sizeof(err)) == 0, "per-fan emergency_temp from config");
	cJSON_Delete(settings);
	set_temp("hwmon3", 1, 62);
	pk_control_tick(&agent, false);
	ok(!agent.emergency && fan_pwm("nct6798_fan4") == 255 && fan_enable("nct6798_fan5") == 2,
	   "a sensor at a fan's own emergency_temp sends that fan (only) to 100 %%");
	set_temp("hwmon3", 1, 40);
	pk_control_tick(&agent, false);
	ok(fan_enable("nct6798_fan4") == 2, "below it the fan goes back to firmware");
	settings = cJSON_Parse("{\"fans\":{\"nct6798_fan4\":{\"emergency_temp\":null}}}");
	pk_settings_apply(&agent, settings, err, sizeof(err));
	cJSON_Delete(settings);

	/* failsafe */
	pk_control_tick(&agent, true);
	ok(agent.failsafe && fan_pwm("nct6798_fan1") == pct(70) && fan_enable("nct6798_fan3") == 2,
	   "server lost beyond grace: driven fans get the failsafe speed, firmware fans stay with firmware");
	pk_control_tick(&agent, false);
	ok(!agent.failsafe && fan_pwm("nct6798_fan1") == pct(40), "server back: the command applies again");

	/* profiles: hysteresis, step, min clamp, disconnect in the middle */
	ok(ack_ok(cmd("{\"command_id\":\"p1\",\"command_type\":\"apply_profile\",\"parameters\":"
				  "{\"fan_id\":\"nct6798_fan3\",\"sensor_id\":\"nct6798_systin\",\"profile\":{\"name\":\"quiet\","
				  "\"points\":[[30,20],[50,50],[70,90]],\"hysteresis\":2,\"step\":0}}}")),
	   "apply_profile with [temp, speed] points");
	set_temp("hwmon1", 1, 60);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(70), "profile: 60 C -> 70 %% (pwm %ld)", fan_pwm("nct6798_fan3"));
	set_temp("hwmon1", 1, 59);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(70), "profile: a 1 C drop inside the hysteresis keeps the speed");
	set_temp("hwmon1", 1, 57.5);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(65), "profile: a drop beyond the hysteresis lowers it (pwm %ld)",
	   fan_pwm("nct6798_fan3"));
	set_temp("hwmon1", 1, 58);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(66), "profile: a rise is followed at once (pwm %ld)", fan_pwm("nct6798_fan3"));
	set_temp("hwmon1", 1, 20);
	settings = cJSON_Parse("{\"fans\":{\"nct6798_fan3\":{\"min_speed\":35}}}");
	pk_settings_apply(&agent, settings, err, sizeof(err));
	cJSON_Delete(settings);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(35), "profile output below min_speed is raised to it (pwm %ld)",
	   fan_pwm("nct6798_fan3"));

	/* hostile: disconnect in the middle of a profile */
	pk_control_tick(&agent, true);
	ok(fan_pwm("nct6798_fan3") == pct(70), "disconnected: the failsafe speed is a floor for the profile fan");
	set_temp("hwmon1", 1, 68);
	pk_control_tick(&agent, true);
	ok(fan_pwm("nct6798_fan3") == pct(86), "disconnected: the profile keeps running locally (68 C -> 86 %%)");
	pk_control_tick(&agent, false);
	set_temp("hwmon1", 1, 40);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan3") == pct(35), "reconnected: the profile alone rules again (pwm %ld)",
	   fan_pwm("nct6798_fan3"));

	ok(ack_ok(cmd("{\"command_id\":\"p2\",\"command_type\":\"apply_profile\",\"parameters\":"
				  "{\"fan_id\":\"nct6798_fan4\",\"sensor_id\":\"nct6798_systin\",\"profile\":{\"name\":\"steps\","
				  "\"points\":[{\"temperature\":30,\"speed\":40},{\"temperature\":60,\"speed\":100}],"
				  "\"step\":10}}}")), "apply_profile with {temperature, speed} points and a step");
	set_temp("hwmon1", 1, 30);
	for (int i = 0; i < 8; i++)
		pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan4") == pct(40), "step: the fan settles at the curve's 40 %% (pwm %ld)",
	   fan_pwm("nct6798_fan4"));
	set_temp("hwmon1", 1, 60);
	{
		long		seen[4];

		for (int i = 0; i < 4; i++)
		{
			pk_control_tick(&agent, false);
			seen[i] = fan_pwm("nct6798_fan4");
		}
		bool		bounded = seen[0] <= pct(40) + pct(10) + 1;

		/* every step is bounded (and climbs), not only the first */
		for (int i = 1; i < 4; i++)
			bounded &= seen[i] > seen[i - 1] && seen[i] - seen[i - 1] <= pct(10) + 1;
		ok(bounded,
		   "step: the speed climbs at most 10 %% per tick (%ld %ld %ld %ld)", seen[0], seen[1], seen[2], seen[3]);
	}
	ok(ack_err(cmd("{\"command_id\":\"p3\",\"command_type\":\"apply_profile\",\"parameters\":"
				   "{\"fan_id\":\"nct6798_fan4\",\"sensor_id\":\"nct6798_systin\",\"profile\":"
				   "{\"points\":[[50,20],[40,50]]}}}"), "temperatures must increase"),
	   "a curve with falling temperatures is refused");
	ok(ack_err(cmd("{\"command_id\":\"p4\",\"command_type\":\"apply_profile\",\"parameters\":"
				   "{\"fan_id\":\"nct6798_fan4\",\"sensor_id\":\"nope\",\"profile\":{\"points\":[[50,20]]}}}"),
			   "no sensor \"nope\""), "a profile on an unknown sensor is refused");
	ok(ack_err(cmd("{\"command_id\":\"p5\",\"command_type\":\"apply_profile\",\"parameters\":"
				   "{\"fan_id\":\"nct6798_fan4\",\"sensor_id\":\"nct6798_systin\",\"profile\":"
				   "{\"points\":[[50,120]]}}}"), "points[0]"), "a speed over 100 in a curve is refused");

	/* emergency_stop and restore_auto */
	ok(ack_ok(cmd("{\"command_id\":\"e1\",\"command_type\":\"emergency_stop\",\"parameters\":{}}")),
	   "emergency_stop is acked");
	ok(fan_pwm("nct6798_fan1") == 255 && fan_pwm("nct6798_fan5") == 255 && fan_pwm("amdgpu_fan1") == 255,
	   "emergency_stop: every fan at 100 %%");
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan5") == 255, "emergency_stop stays until restore_auto");
	ok(ack_ok(cmd("{\"command_id\":\"r1\",\"command_type\":\"restore_auto\",\"parameters\":"
				  "{\"fan_id\":\"amdgpu_fan1\"}}")) && fan_pwm("amdgpu_fan1") == 255,
	   "restore_auto of one fan does not end an emergency stop");
	ok(ack_ok(cmd("{\"command_id\":\"r2\",\"command_type\":\"restore_auto\",\"parameters\":{}}")),
	   "restore_auto for all fans is acked");
	ok(fan_enable("nct6798_fan1") == 2 && fan_enable("nct6798_fan5") == 2 && fan_enable("amdgpu_fan1") == 2,
	   "restore_auto gives every fan back to firmware (pwm_enable 2)");

	/* settings */
	settings = cJSON_Parse("{\"update_interval\":100,\"failsafe_speed\":50}");
	ok(pk_settings_apply(&agent, settings, err, sizeof(err)) == -1 && strstr(err, "update_interval") &&
	   agent.settings.failsafe_speed == 70, "invalid settings are refused whole, naming the field (%s)", err);
	cJSON_Delete(settings);
	ok(ack_ok(cmd("{\"command_id\":\"s1\",\"command_type\":\"update_settings\",\"parameters\":"
				  "{\"settings\":{\"update_interval\":2,\"failsafe_speed\":60,\"unknown\":1}}}")) &&
	   agent.settings.update_interval == 2 && agent.settings.failsafe_speed == 60,
	   "update_settings applies, ignoring unknown fields");
	ok(ack_ok(cmd("{\"command_id\":\"s1b\",\"command_type\":\"update_settings\",\"parameters\":"
				  "{\"settings\":{\"log_level\":\"trace\"}}}")), "log_level trace (the server's finest) is accepted");
	pk_log_level = PK_LOG_ERROR;
	ok(ack_err(cmd("{\"command_id\":\"s2\",\"command_type\":\"update_settings\",\"parameters\":"
				   "{\"settings\":{\"log_level\":\"loud\"}}}"), "log_level"), "a bad log_level is refused");
	ok(ack_err(cmd("{\"command_id\":\"s3\",\"command_type\":\"update_settings\",\"parameters\":"
				   "{\"settings\":{\"fans\":{\"nct6798_fan1\":{\"min_speed\":80,\"max_speed\":20}}}}}"),
			   "min_speed 80 is above max_speed 20"), "min above max is refused");
	ack_ok(cmd("{\"command_id\":\"m1\",\"command_type\":\"set_fan_speed\","
			   "\"parameters\":{\"fan_id\":\"nct6798_fan2\",\"speed\":50}}"));
	ok(ack_ok(cmd("{\"command_id\":\"s4\",\"command_type\":\"update_settings\",\"parameters\":"
				  "{\"enable_fan_control\":false}}")) && fan_enable("nct6798_fan2") == 2,
	   "enable_fan_control false gives fans back to firmware");
	ok(ack_err(cmd("{\"command_id\":\"m2\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan2\",\"speed\":50}}"), "disabled"),
	   "with fan control disabled, set_fan_speed is refused");
	set_temp("hwmon0", 1, 99);
	pk_control_tick(&agent, false);
	ok(fan_pwm("nct6798_fan2") == 255, "with fan control disabled, an emergency still drives the fans");
	set_temp("hwmon0", 1, 50);
	pk_control_tick(&agent, false);

	/* restore on exit */
	settings = cJSON_Parse("{\"enable_fan_control\":true}");
	pk_settings_apply(&agent, settings, err, sizeof(err));
	cJSON_Delete(settings);
	set_enable("nct6798_fan5", 5);	/* pretend firmware mode 5 (Smart Fan IV) */
	{
		/* a fresh agent sees mode 5 as the original */
		struct pk_agent saved = agent;

		memset(&agent, 0, sizeof(agent));
		pk_settings_defaults(&agent.settings);
		pk_hw_init(&agent.hw, tree);
		pk_hw_scan(&agent.hw);
		ack_ok(cmd("{\"command_id\":\"x1\",\"command_type\":\"set_fan_speed\","
				   "\"parameters\":{\"fan_id\":\"nct6798_fan5\",\"speed\":50}}"));
		ok(fan_enable("nct6798_fan5") == 1, "fan in manual mode while the agent runs");
		pk_control_restore(&agent);
		ok(fan_enable("nct6798_fan5") == 5, "on exit the original pwm_enable (5) is restored");
		ok(fan_enable("nct6798_fan1") == 2, "fans never touched are left alone");
		pk_hw_free(&agent.hw);
		free(agent.hw.hwmon_dir);
		free(agent.hw.signature);
		pk_recent_free(&agent);
		pk_fanmodes_free(&agent);
		agent = saved;
	}
	pk_hw_free(&agent.hw);
	free(agent.hw.hwmon_dir);
	free(agent.hw.signature);
	pk_recent_free(&agent);
	pk_fanmodes_free(&agent);
	pk_host_limits_free(&agent.host);
	free(agent.limits);
}

/* ---------------- buffer ---------------- */

static char *
frame_json(int64_t seq)
{
	char	   *s = malloc(64);

	snprintf(s, 64, "{\"seq\":%lld,\"x\":\"%s\"}", (long long) seq, "payload");
	return s;
}

static void
test_buffer(const char *dir)
{
	struct pk_buffer b;
	char		file[1024];
	struct stat st;
	bool		order = true;
	int64_t		first;

	pk_log_level = PK_LOG_ERROR;
	ok(pk_buffer_init(&b, 5, 0, NULL) == 0 && b.next_seq >= pk_now_ms() - 1000,
	   "seq starts at the epoch milliseconds, so a restart never reuses one");
	first = b.next_seq;
	for (int i = 0; i < 8; i++)
		pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	ok(b.count == 5 && b.dropped == 3, "a full buffer drops the oldest frames and counts them (%zu held, %llu dropped)",
	   b.count, (unsigned long long) b.dropped);
	ok(pk_buffer_at(&b, 0)->seq == first + 3 && pk_buffer_at(&b, 4)->seq == first + 7,
	   "the newest frames are kept, in order");
	ok(pk_buffer_after(&b, first + 4)->seq == first + 5 && pk_buffer_after(&b, first + 7) == NULL,
	   "pk_buffer_after finds the next frame to send");
	ok(pk_buffer_ack(&b, first + 5) == 3 && b.count == 2 && pk_buffer_at(&b, 0)->seq == first + 6,
	   "an ack removes every frame up to its seq");
	ok(pk_buffer_ack(&b, first + 2) == 0 && b.count == 2, "an old ack removes nothing");
	pk_buffer_close(&b);

	pk_buffer_init(&b, 100, 0, NULL);
	b.max_age_ms = 50;
	pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	first = b.next_seq;
	usleep(80 * 1000);
	pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	ok(b.count == 1 && b.dropped == 1 && pk_buffer_at(&b, 0)->seq == first,
	   "frames older than the age bound go when a new one comes, counted");
	pk_buffer_close(&b);

	pk_buffer_init(&b, 100, 100, NULL);
	for (int i = 0; i < 10; i++)
		pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	ok(b.bytes <= 100 && b.count == b.bytes / strlen(pk_buffer_at(&b, 0)->json),
	   "the byte bound holds (%zu bytes in %zu frames)", b.bytes, b.count);
	pk_buffer_close(&b);

	/* persistence */
	snprintf(file, sizeof(file), "%s/buffer.dat", dir);
	pk_buffer_init(&b, 1000, 0, file);
	first = b.next_seq;
	for (int i = 0; i < 10; i++)
		pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	pk_buffer_ack(&b, first + 3);
	pk_buffer_close(&b);
	memset(&st, 0, sizeof(st));
	stat(file, &st);
	ok((st.st_mode & 0777) == 0600, "the buffer file is private (mode %o)", st.st_mode & 0777);
	pk_buffer_init(&b, 1000, 0, file);
	ok(b.count == 6 && pk_buffer_at(&b, 0)->seq == first + 4 && pk_buffer_at(&b, 5)->seq == first + 9,
	   "a restarted agent loads its unacknowledged frames (%zu)", b.count);
	ok(b.next_seq >= first + 10, "and continues the seq counter");
	{
		char	   *want = frame_json(first + 4);

		ok(strcmp(pk_buffer_at(&b, 0)->json, want) == 0, "frames come back intact (%s)",
		   pk_buffer_at(&b, 0)->json);
		free(want);
	}
	/* order over the six reloaded frames, not over one */
	for (size_t i = 1; i < b.count; i++)
		order &= pk_buffer_at(&b, i)->seq == pk_buffer_at(&b, i - 1)->seq + 1;
	ok(order && b.count == 6, "loaded frames are in seq order");
	/* many acks: the file is compacted, not grown without end */
	for (int i = 0; i < 2000; i++)
	{
		int64_t		s = b.next_seq;

		pk_buffer_push(&b, s, frame_json(s));
		pk_buffer_ack(&b, s);
	}
	stat(file, &st);
	ok(st.st_size < 20000, "the file is compacted as frames are acknowledged (%lld bytes)", (long long) st.st_size);
	first = b.next_seq;
	pk_buffer_push(&b, first, frame_json(first));
	pk_buffer_close(&b);
	/* a crash in the middle of a line */
	{
		FILE	   *f = fopen(file, "a");

		fputs("F 999999999999999 {\"cut", f);
		fclose(f);
	}
	pk_buffer_init(&b, 1000, 0, file);
	ok(b.count == 1 && pk_buffer_at(&b, 0)->seq == first, "a line cut short by a crash is ignored, the rest loads");
	pk_buffer_close(&b);
	write_file(file, "garbage\nF x y\nA\n");
	ok(pk_buffer_init(&b, 10, 0, file) == 0 && b.count == 0, "a garbage file loads as empty, without a crash");
	pk_buffer_close(&b);
	ok(pk_buffer_init(&b, 10, 0, pathf("%s/no/such/dir/buf", dir)) == 0,
	   "an unwritable file leaves the buffer working in memory");
	pk_buffer_push(&b, b.next_seq, frame_json(b.next_seq));
	ok(b.count == 1, "and frames are still buffered");
	pk_buffer_close(&b);
}

/* ---------------- backoff ---------------- */

static void
test_backoff(const char *dir)
{
	bool		within = true;
	double		lo = 1e9,
				hi = 0;

	ok(pk_backoff_delay(0, 1, 60, 0.99) == 1, "first retry after the minimum (1 s)");
	ok(fabs(pk_backoff_delay(3, 1, 60, 1.0) - 8) < 1e-9, "the ceiling doubles per attempt (8 s at the 4th)");
	ok(pk_backoff_delay(10, 1, 60, 1.0) == 60 && pk_backoff_delay(1000, 1, 60, 1.0) == 60,
	   "never more than the maximum (60 s)");
	ok(pk_backoff_delay(10, 1, 60, 0.0) == 1, "never less than the minimum");
	for (int i = 0; i < 1000; i++)
	{
		double		d = pk_backoff_delay(8, 1, 60, (double) (random() % 1000000) / 1e6);

		within &= d >= 1 && d <= 60;
		lo = fmin(lo, d);
		hi = fmax(hi, d);
	}
	ok(within && hi - lo > 40, "full jitter spreads retries over the whole window (%.1f..%.1f s)", lo, hi);

	/* pacing: the bridge's bucket holds one minute of its rate */
	{
		double		tokens = 60;
		int64_t		stamp = 0,
					now = 0;
		int			sent = 0;
		int64_t		wait = 0;

		for (int i = 0; i < 60; i++)
			sent += pk_pace(&tokens, &stamp, 60, now) == 0;
		ok(sent == 60, "pacing: a full bucket lets a burst of one minute's rate through");
		wait = pk_pace(&tokens, &stamp, 60, now);
		ok(wait > 900 && wait <= 1001, "pacing: then the next message waits for a token (%lld ms)", (long long) wait);
		sent = 0;
		for (now = 0; now <= 60000; now += 100)
			while (pk_pace(&tokens, &stamp, 60, now) == 0)
				sent++;
		ok(sent >= 59 && sent <= 61, "pacing: a backlog drains at the rate, 60 in a minute (%d)", sent);
		ok(pk_pace(&tokens, &stamp, 0, now) == 0 && pk_pace(&tokens, &stamp, 0, now) == 0,
		   "pacing: rate 0 means unlimited");
	}
	(void) dir;
}

/* ---------------- simulator ---------------- */

static double
cpu_temp(void)
{
	long		v = read_num(pathf("%s/class/hwmon/hwmon0/temp1_input", tree));

	return v / 1000.0;
}

static void
test_sim(const char *dir)
{
	struct pk_sim *s;
	double		hot,
				cooled,
				idle;
	long		rpm_full,
				rpm_half;

	snprintf(tree, sizeof(tree), "%s/sys", dir);
	s = pk_sim_open(tree, 5);
	ok(s != NULL, "the simulator creates and opens a tree");
	if (!s)
		return;
	write_file(pathf("%s/sim/load", tree), "80\n");
	for (int i = 0; i < 300; i++)
		pk_sim_step(s, 1);
	ok(cpu_temp() > 45 && cpu_temp() < 85, "under load with firmware fans the CPU settles warm (%.1f C)", cpu_temp());
	ok(read_num(pathf("%s/class/hwmon/hwmon1/pwm1", tree)) > 128,
	   "firmware speeds the CPU fan up with the temperature (pwm %ld)",
	   read_num(pathf("%s/class/hwmon/hwmon1/pwm1", tree)));
	/* stop the CPU fans by hand */
	for (int f = 1; f <= 2; f++)
	{
		pk_write_long(pathf("%s/class/hwmon/hwmon1/pwm%d_enable", tree, f), 1);
		pk_write_long(pathf("%s/class/hwmon/hwmon1/pwm%d", tree, f), 25);
	}
	for (int i = 0; i < 200; i++)
		pk_sim_step(s, 1);
	hot = cpu_temp();
	rpm_half = read_num(pathf("%s/class/hwmon/hwmon1/fan1_input", tree));
	for (int f = 1; f <= 2; f++)
		pk_write_long(pathf("%s/class/hwmon/hwmon1/pwm%d", tree, f), 255);
	for (int i = 0; i < 200; i++)
		pk_sim_step(s, 1);
	cooled = cpu_temp();
	rpm_full = read_num(pathf("%s/class/hwmon/hwmon1/fan1_input", tree));
	ok(hot > cooled + 15, "a fan command cools the CPU: %.1f C at 10 %% pwm, %.1f C at 100 %%", hot, cooled);
	ok(rpm_full > 1700 && rpm_full < 1900 && rpm_half > 100 && rpm_half < 250,
	   "rpm follows pwm (%ld rpm at 10 %%, %ld at 100 %%)", rpm_half, rpm_full);
	write_file(pathf("%s/sim/load", tree), "0\n");
	for (int i = 0; i < 200; i++)
		pk_sim_step(s, 1);
	idle = cpu_temp();
	ok(idle < cooled - 5, "temperatures follow the load (%.1f C idle)", idle);
	ok(read_num(pathf("%s/class/hwmon/hwmon1/fan3_input", tree)) > 0 &&
	   read_num(pathf("%s/class/hwmon/hwmon3/temp2_input", tree)) > 25000, "other chips are animated too");
	pk_sim_free(s);
}

int
main(int argc, char **argv)
{
	if (argc != 3)
	{
		fprintf(stderr, "usage: %s hwmon|procstat|control|buffer|backoff|sim DIR\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "hwmon") == 0)
		test_hwmon(argv[2]);
	else if (strcmp(argv[1], "procstat") == 0)
		test_procstat(argv[2]);
	else if (strcmp(argv[1], "control") == 0)
		test_control(argv[2]);
	else if (strcmp(argv[1], "buffer") == 0)
		test_buffer(argv[2]);
	else if (strcmp(argv[1], "backoff") == 0)
		test_backoff(argv[2]);
	else if (strcmp(argv[1], "sim") == 0)
		test_sim(argv[2]);
	else
	{
		fprintf(stderr, "unknown section %s\n", argv[1]);
		return 2;
	}
	printf("1..%d\n", tests);
	return failures ? 1 : 0;
}
