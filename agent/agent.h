/*
 * agent.h - declarations shared by the parts of the Pankha host agent.
 *
 * The agent reads temperatures and fans from Linux hwmon (hwmon.c) and host
 * figures from /proc (procstat.c), keeps fans inside their safety limits and
 * runs commands and profiles (control.c) with the fans' original modes
 * recorded where a restart finds them (fanmodes.c), builds the data frames
 * (frame.c), buffers every frame until the server acknowledges it
 * (buffer.c) and talks to the bridge over a WebSocket (link.c, with its
 * private link.h) or, when upgrades are blocked, over HTTP (sync.c, on the
 * client of http.c); enroll.c registers a new agent.  sim.c writes and
 * animates a fake hwmon tree for tests and demos.  main.c holds the options
 * and start-up and shut-down around the event loop of link.c.
 */
#ifndef PANKHA_AGENT_H
#define PANKHA_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "version.h"			/* PK_AGENT_VERSION, generated from ../pankha.control */

/* Sensor and fan ids are 1..64 bytes on the wire (pankha.valid_id). */
#define PK_ID_MAX 64

/* Entries a data frame may carry (PK_MAX_SENSORS, PK_MAX_FANS of the extension). */
#define PK_WIRE_MAX_SENSORS 256
#define PK_WIRE_MAX_FANS 64

/* ---- logging and small file helpers (util.c) ---- */

enum pk_log_level
{
	PK_LOG_ERROR = 0,
	PK_LOG_WARN,
	PK_LOG_INFO,
	PK_LOG_DEBUG
};

extern int	pk_log_level;

void		pk_log(int level, const char *fmt,...) __attribute__((format(printf, 2, 3)));
int			pk_log_level_parse(const char *name);
int64_t		pk_now_ms(void);
int64_t		pk_mono_ms(void);
char	   *pk_path_join(const char *dir, const char *name);
char	   *pk_read_text(const char *path, size_t max, size_t *len_out);
int			pk_read_long(const char *path, long *value);
int			pk_write_long(const char *path, long value);
int			pk_write_text_atomic(const char *path, const char *text);
long		pk_round(double v);
long		pk_ceil(double v);

/* ---- hwmon discovery (hwmon.c) ---- */

/* One temperature input. */
struct pk_sensor
{
	char		id[PK_ID_MAX + 1];	/* stable id: chip name + label or index */
	char	   *input_path;		/* tempN_input */
	const char *kind;			/* "cpu", "gpu", "nvme", ... from the chip name */
	double		temp;			/* last reading, degrees C */
	bool		valid;			/* last read succeeded */
	double		max_temp;		/* tempN_max, when has_max */
	double		crit_temp;		/* tempN_crit, when has_crit */
	bool		has_max;
	bool		has_crit;
	/* the static fields as the last frame that carried them had them (frame.c) */
	bool		meta_sent;		/* false: the next frame carries them */
	const char *sent_kind;
	double		sent_max;		/* rounded as sent; NAN when not sent */
	double		sent_crit;
};

/* How the agent is driving a fan. */
enum pk_fan_mode
{
	PK_FAN_AUTO = 0,			/* left to firmware; the agent does not write */
	PK_FAN_MANUAL,				/* fixed speed from set_fan_speed */
	PK_FAN_PROFILE				/* temperature curve run locally */
};

/* A temperature -> speed curve with hysteresis and a step limit. */
struct pk_profile
{
	char	   *name;			/* as given by the server */
	char		sensor_id[PK_ID_MAX + 1];	/* input of the curve */
	int			npoints;		/* points, sorted by temperature */
	double	   *temps;			/* degrees C */
	double	   *speeds;			/* percent */
	double		hysteresis;		/* degrees C a reading must move to change speed */
	double		step;			/* largest change per tick in percent, 0 = none */
	double		last_temp;		/* temperature the current target came from */
	double		target;			/* curve output at last_temp */
	bool		have_last;		/* last_temp/target are set */
};

/* One fan: an rpm input and/or a pwm output of one chip. */
struct pk_fan
{
	char		id[PK_ID_MAX + 1];	/* stable id: chip name + label or index */
	char	   *rpm_path;		/* fanN_input or NULL */
	char	   *pwm_path;		/* pwmN or NULL (not controllable) */
	char	   *enable_path;	/* pwmN_enable or NULL */
	long		rpm;			/* last rpm reading */
	long		pwm;			/* last pwm reading, 0..255, or -1 */
	long		orig_enable;	/* pwmN_enable before we touched it, or -1 */
	bool		touched;		/* we have written pwm/enable */
	enum pk_fan_mode mode;		/* what drives the fan */
	double		manual_speed;	/* percent for PK_FAN_MANUAL */
	struct pk_profile *profile; /* for PK_FAN_PROFILE */
	double		output;			/* percent applied at the last tick, -1 if none */
	double		target;			/* percent wanted at the last tick, -1 = firmware */
	long		written_pwm;	/* value we last wrote, -1 if none */
	const char *status;			/* "ok", "auto", "emergency", "failsafe", ... */
	unsigned long reasserts;	/* times another writer was overridden */
};

/* Per-fan safety limits, kept by id so they survive re-scans. */
struct pk_fan_limit
{
	char		id[PK_ID_MAX + 1];
	double		min_speed;		/* percent */
	double		max_speed;		/* percent */
	double		emergency_temp; /* this fan to 100 % at/above, 0 = none */
};

/* A fan's original pwm_enable, as recorded in the state directory. */
struct pk_fanmode
{
	char		id[PK_ID_MAX + 1];
	long		enable;
};

/* A fan's minimum speed from this host's own configuration. */
struct pk_fan_floor
{
	char		id[PK_ID_MAX + 1];
	double		min_speed;		/* percent */
};

/*
 * The safety limits of the host's own configuration (agent.conf, flags):
 * nothing that arrives over the wire can make them less safe.  A fan's
 * floor is the larger of its host floor and the limit the server sends;
 * the server may lower the emergency temperature and raise the failsafe
 * speed, not the reverse.
 */
struct pk_host_limits
{
	double		min_speed;		/* floor of every fan without its own, percent */
	struct pk_fan_floor *fans;	/* per-fan floors (min-speed = FAN=PERCENT) */
	int			nfans;
	double		emergency_temp; /* highest emergency temperature allowed, 0 = none */
	double		failsafe_speed; /* lowest failsafe speed allowed */
};

/* Everything discovered under <sysfs>/class/hwmon. */
struct pk_hw
{
	char	   *hwmon_dir;		/* <sysfs-root>/class/hwmon */
	char	   *signature;		/* entries and chip names at the last scan */
	struct pk_sensor *sensors;
	int			nsensors;
	struct pk_fan *fans;
	int			nfans;
};

int			pk_hw_init(struct pk_hw *hw, const char *sysfs_root);
int			pk_hw_scan(struct pk_hw *hw);
bool		pk_hw_changed(struct pk_hw *hw);
void		pk_hw_read(struct pk_hw *hw);
void		pk_hw_free(struct pk_hw *hw);
void		pk_sanitize_id(char *out, size_t outlen, const char *chip, const char *what);
struct pk_sensor *pk_hw_sensor(struct pk_hw *hw, const char *id);
struct pk_fan *pk_hw_fan(struct pk_hw *hw, const char *id);
void		pk_profile_free(struct pk_profile *p);

/* ---- /proc and statvfs figures (procstat.c) ---- */

struct pk_proc
{
	char	   *proc_root;		/* usually /proc */
	char	   *disk_path;		/* filesystem whose usage is reported */
	unsigned long long cpu_total;	/* jiffies at the last sample */
	unsigned long long cpu_idle;
	bool		have_cpu;
	unsigned long long net_rx;	/* bytes at the last sample */
	unsigned long long net_tx;
	int64_t		net_ms;			/* monotonic time of the last sample */
	bool		have_net;
	double		cpu_usage;		/* percent; -1 when unknown */
	double		mem_usage;		/* percent; -1 when unknown */
	double		disk_usage;		/* percent; -1 when unknown */
	double		rx_rate;		/* bytes/s; -1 when unknown */
	double		tx_rate;
	double		load1;			/* -1 when unknown */
};

int			pk_parse_stat(const char *text, unsigned long long *total, unsigned long long *idle);
int			pk_parse_meminfo(const char *text, double *used_percent);
int			pk_parse_netdev(const char *text, unsigned long long *rx, unsigned long long *tx);
int			pk_parse_loadavg(const char *text, double *load1);
void		pk_proc_init(struct pk_proc *p, const char *proc_root, const char *disk_path);
void		pk_proc_sample(struct pk_proc *p, int64_t mono_ms);
void		pk_proc_free(struct pk_proc *p);
long		pk_self_rss_kb(const char *proc_root);

/* ---- resend buffer (buffer.c) ---- */

struct pk_frame
{
	int64_t		seq;
	char	   *json;			/* the data object, without the envelope */
	size_t		len;
	int64_t		at_ms;			/* monotonic time it was buffered (or loaded) */
};

struct pk_buffer
{
	struct pk_frame *ring;		/* circular array of frames */
	size_t		cap;			/* allocated slots */
	size_t		head;			/* index of the oldest frame */
	size_t		count;			/* frames held */
	size_t		bytes;			/* sum of their lengths */
	size_t		max_frames;		/* bound on count */
	size_t		max_bytes;		/* bound on bytes */
	int64_t		max_age_ms;		/* older frames go when a new one comes, 0 = no bound */
	uint64_t	dropped;		/* frames dropped unacknowledged, ever */
	int64_t		next_seq;		/* seq of the next frame */
	int64_t		acked;			/* highest seq acknowledged */
	char	   *path;			/* persistence file or NULL */
	int			fd;				/* open append descriptor or -1 */
	size_t		records;		/* lines in the file since the last compaction */
};

int			pk_buffer_init(struct pk_buffer *b, size_t max_frames, size_t max_bytes, const char *path);
int			pk_buffer_push(struct pk_buffer *b, int64_t seq, char *json);
size_t		pk_buffer_ack(struct pk_buffer *b, int64_t seq);
const struct pk_frame *pk_buffer_at(const struct pk_buffer *b, size_t i);
const struct pk_frame *pk_buffer_after(const struct pk_buffer *b, int64_t seq);
void		pk_buffer_close(struct pk_buffer *b);

/* ---- the agent ---- */

/* Settings the server may change with config_update / update_settings. */
struct pk_settings
{
	double		update_interval;	/* seconds between data frames, 0.5..30 */
	double		emergency_temp; /* any sensor at/above -> all fans 100 % */
	double		failsafe_speed; /* percent when the server is lost */
	double		fan_step;		/* default profile step, percent per tick */
	double		hysteresis;		/* default profile hysteresis, degrees C */
	int			log_level;		/* PK_LOG_* */
	bool		enable_fan_control; /* false: commands do not touch fans */
};

/* A command id recently executed, with the result that was acked. */
struct pk_recent_cmd
{
	char	   *id;
	bool		success;
	char	   *error;
};

#define PK_RECENT_CMDS 64

struct pk_link;

struct pk_agent
{
	/* options */
	char	   *server_url;		/* ws:// or wss:// base of the bridge */
	char	   *agent_id;		/* our id on the wire */
	char	   *agent_name;		/* display name for enrollment */
	char	   *token;			/* agent bearer token */
	char	   *token_file;		/* where the token is read from / stored */
	char	   *ca_file;		/* CA bundle for wss/https, NULL = system */
	bool		insecure;		/* skip certificate checks (asked for) */
	char	   *sysfs_root;		/* /sys or a fake tree */
	char	   *proc_root;		/* /proc or a fake tree */
	char	   *disk_path;		/* filesystem for diskUsage */
	double		buffer_seconds; /* how much unacked data to keep */
	size_t		buffer_max_bytes;	/* byte bound of the buffer */
	char	   *buffer_file;	/* persistence file, NULL = none */
	char	   *state_dir;		/* where fan-modes is kept, NULL = nowhere */
	double		failsafe_grace; /* seconds without server before failsafe */
	double		ping_interval;	/* seconds between pings */
	double		reconnect_min;	/* backoff floor, seconds */
	double		reconnect_max;	/* backoff ceiling, seconds */
	int			fallback_after; /* failed handshakes before trying HTTP sync */
	bool		deflate;		/* offer permessage-deflate */
	double		status_interval;	/* seconds between status messages */
	char	   *enroll_url;		/* --enroll: register and exit */
	char	   *enrollment_key; /* key for --enroll */
	char	   *enrollment_key_file;	/* where it is read from */
	char	   *simulate_dir;	/* --simulate: fake tree animated here */
	bool		simulate_only;	/* run only the simulator */
	bool		sim_once;		/* write the tree and exit */
	unsigned	sim_seed;		/* simulator randomness */

	/* state */
	struct pk_settings settings;	/* settings as the server gave them */
	struct pk_host_limits host;	/* this host's own safety limits */
	struct pk_fan_limit *limits;	/* per-fan safety limits from the server, by id */
	int			nlimits;
	struct pk_hw hw;			/* sensors and fans */
	struct pk_proc proc;		/* host figures */
	struct pk_buffer buf;		/* unacknowledged frames */
	struct pk_recent_cmd recent[PK_RECENT_CMDS];	/* ring of executed ids */
	int			recent_next;	/* slot to overwrite next */
	bool		emergency;		/* a sensor is at/above its limit */
	double		hottest;		/* highest valid temperature at the last tick */
	bool		emergency_stop; /* emergency_stop latched by command */
	bool		failsafe;		/* the server is lost beyond the grace */
	int64_t		started_ms;		/* monotonic start time */
	unsigned long reasserts;	/* total overrides of our pwm noticed */
	int			sensors_omitted;	/* left out of the last frame (protocol limit) */
	bool		meta_settled;	/* frames may leave out sensors' unchanged static fields */
	int			fans_omitted;
	struct pk_fanmode *fanmodes;	/* original pwm_enable by fan id (fanmodes.c) */
	int			nfanmodes;
	struct pk_link *link;		/* connection state (link.c) */
	struct pk_sim *sim;			/* in-process simulator or NULL */
};

/* control.c */
void		pk_settings_defaults(struct pk_settings *s);
void		pk_host_limits_defaults(struct pk_host_limits *h);
int			pk_host_min_speed_parse(struct pk_host_limits *h, const char *value, char *err, size_t errlen);
void		pk_host_limits_free(struct pk_host_limits *h);
double		pk_emergency_temp(struct pk_agent *a);
double		pk_failsafe_speed(struct pk_agent *a);
int			pk_settings_apply(struct pk_agent *a, const cJSON *obj, char *err, size_t errlen);
double		pk_fan_min(struct pk_agent *a, const char *fan_id);
double		pk_fan_max(struct pk_agent *a, const char *fan_id);
double		pk_fan_emergency(struct pk_agent *a, const char *fan_id);
int			pk_set_fan_limit(struct pk_agent *a, const char *fan_id, double min_speed,
							 double max_speed, char *err, size_t errlen);
void		pk_control_tick(struct pk_agent *a, bool server_lost);
cJSON	   *pk_command_handle(struct pk_agent *a, const cJSON *data);
int			pk_command_execute(struct pk_agent *a, const char *type, const cJSON *params,
							   char *err, size_t errlen);
void		pk_control_restore(struct pk_agent *a);
void		pk_recent_free(struct pk_agent *a);
double		pk_profile_eval(const struct pk_profile *p, double temp);

/* fanmodes.c */
void		pk_fanmodes_load(struct pk_agent *a);
long		pk_fanmodes_original(struct pk_agent *a, struct pk_fan *f);
void		pk_fanmodes_done(struct pk_agent *a, const bool *restored);
void		pk_fanmodes_free(struct pk_agent *a);

/* messages built from the current state (frame.c) */
char	   *pk_build_data(struct pk_agent *a, int64_t seq, bool connected);
char	   *pk_build_status(struct pk_agent *a);

/* ---- link (link.c, sync.c, enroll.c) ---- */
int			pk_link_create(struct pk_agent *a);
int			pk_link_run(struct pk_agent *a);
int			pk_link_enroll(struct pk_agent *a);
void		pk_link_stop(struct pk_agent *a);
void		pk_link_destroy(struct pk_agent *a);
double		pk_backoff_delay(int attempt, double min_s, double max_s, double unit_random);
int64_t		pk_pace(double *tokens, int64_t *stamp_ms, double rate_per_min, int64_t now_ms);

/* ---- simulator (sim.c) ---- */
struct pk_sim;
int			pk_sim_create(const char *dir, unsigned seed);
struct pk_sim *pk_sim_open(const char *dir, unsigned seed);
void		pk_sim_step(struct pk_sim *s, double dt);
void		pk_sim_free(struct pk_sim *s);

#endif							/* PANKHA_AGENT_H */
