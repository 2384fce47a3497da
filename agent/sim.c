/*
 * sim.c - a simulated machine in a fake sysfs tree, for tests and demos.
 *
 * pk_sim_create() writes <dir>/class/hwmon/hwmon0..3 the way the kernel
 * lays them out: a coretemp CPU (13 sensors), an nct6798 Super-I/O
 * (8 sensors, 5 fans with pwm), an nvme drive (3 sensors) and an amdgpu
 * card (3 sensors, 1 fan with pwm): 27 temperatures and 6 fans.
 *
 * pk_sim_step() advances a small thermal model.  Four zones (cpu, board,
 * nvme, gpu) each settle towards ambient + power / (k0 + k1 * airflow)
 * with a first-order lag; power follows the load (the number in
 * <dir>/sim/load, 0..100, when that file exists, otherwise a slow wave) and
 * airflow is the mean pwm of the zone's fans.  A fan whose pwmN_enable is
 * not 1 (manual) is driven by a "firmware" curve, as a BIOS would; rpm
 * follows pwm.  Files are replaced atomically so a reader never sees half
 * a value, and only when the value changes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

enum zone
{
	ZONE_CPU, ZONE_BOARD, ZONE_NVME, ZONE_GPU, NZONES
};

/* Thermal constants per zone. */
static const struct
{
	double		idle_power;		/* W at no load */
	double		load_power;		/* W added at full load */
	double		k0;				/* W/K conducted with fans stopped */
	double		k1;				/* W/K added at full airflow */
	double		tau;			/* seconds to settle 63 % */
}			zones[NZONES] = {
	[ZONE_CPU] = {15, 85, 0.8, 1.6, 20},
	[ZONE_BOARD] = {8, 10, 0.4, 0.6, 60},
	[ZONE_NVME] = {5, 8, 0.25, 0.35, 40},
	[ZONE_GPU] = {10, 24, 0.6, 1.2, 30},
};

#define AMBIENT 25.0
#define NCHIPS 4

static const char *const chip_names[NCHIPS] = {"coretemp", "nct6798", "nvme", "amdgpu"};
/* The devices behind them, as real sysfs links each hwmonN/device (audit 11). */
static const char *const chip_devices[NCHIPS] = {"coretemp.0", "nct6775.656", "0000:01:00.0", "0000:03:00.0"};

struct sim_sensor
{
	int			chip;
	int			index;			/* tempN */
	const char *label;			/* NULL: no tempN_label file */
	enum zone	zone;
	double		offset;			/* degrees above the zone temperature */
	double		max;			/* 0: no tempN_max */
	double		crit;			/* 0: no tempN_crit */
	double		resolution;		/* degrees per step of the reported value */
	long		written;		/* last millidegrees written */
};

struct sim_fan
{
	int			chip;
	int			index;			/* fanN / pwmN */
	enum zone	zone;
	double		max_rpm;
	long		written_rpm;
	long		pwm;			/* current pwm as the hardware has it */
};

struct pk_sim
{
	char	   *dir;			/* the tree root */
	char	   *chip_dir[NCHIPS];	/* <dir>/class/hwmon/hwmonN */
	char	   *load_path;		/* <dir>/sim/load */
	struct sim_sensor *sensors;
	int			nsensors;
	struct sim_fan fans[6];
	int			nfans;
	double		zone_temp[NZONES];
	double		t;				/* simulated seconds */
	unsigned	rng;			/* xorshift state */
};

static int	mkdirs(const char *path);
static int	write_attr(const char *dir, const char *name, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
static double noise(struct pk_sim *s);
static struct pk_sim *sim_layout(const char *dir, unsigned seed);
static double load_now(struct pk_sim *s);
static double zone_airflow(struct pk_sim *s, enum zone z);

/* mkdir -p */
static int
mkdirs(const char *path)
{
	char	   *p = strdup(path);

	if (!p)
		return -1;
	for (char *s = p + 1; *s; s++)
		if (*s == '/')
		{
			*s = '\0';
			if (mkdir(p, 0755) != 0 && errno != EEXIST)
			{
				free(p);
				return -1;
			}
			*s = '/';
		}
	if (mkdir(p, 0755) != 0 && errno != EEXIST)
	{
		free(p);
		return -1;
	}
	free(p);
	return 0;
}

/* Write dir/name atomically with printf-formatted contents. */
static int
write_attr(const char *dir, const char *name, const char *fmt,...)
{
	char		text[128];
	va_list		ap;
	char	   *path = pk_path_join(dir, name);
	int			rc;

	if (!path)
		return -1;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	rc = pk_write_text_atomic(path, text);
	free(path);
	return rc;
}

/* Uniform noise in [-1, 1] from a xorshift generator. */
static double
noise(struct pk_sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 17;
	s->rng ^= s->rng << 5;
	return (double) (s->rng % 20001) / 10000.0 - 1.0;
}

/* The fixed machine: which sensors and fans exist and where. */
static struct pk_sim *
sim_layout(const char *dir, unsigned seed)
{
	static const char *const nct_labels[] = {"SYSTIN", "CPUTIN", "AUXTIN0", "AUXTIN1", "AUXTIN2",
	"AUXTIN3", "PECI Agent 0", "PCH_CHIP_TEMP"};
	static const char *const core_labels[] = {"Core 0", "Core 1", "Core 2", "Core 3", "Core 4",
	"Core 5", "Core 6", "Core 7", "Core 8", "Core 9", "Core 10", "Core 11"};
	struct pk_sim *s = calloc(1, sizeof(*s));
	int			n = 0;

	if (!s)
		return NULL;
	s->rng = seed ? seed : 2463534242u;
	s->dir = strdup(dir);
	s->load_path = pk_path_join(dir, "sim/load");
	s->sensors = calloc(32, sizeof(*s->sensors));
	if (!s->dir || !s->load_path || !s->sensors)
	{
		pk_sim_free(s);
		return NULL;
	}
	for (int c = 0; c < NCHIPS; c++)
	{
		char		rel[64];

		snprintf(rel, sizeof(rel), "class/hwmon/hwmon%d", c);
		if (!(s->chip_dir[c] = pk_path_join(dir, rel)))
		{
			pk_sim_free(s);
			return NULL;
		}
	}
	/* coretemp: package + 12 cores, 1 degree resolution */
	s->sensors[n++] = (struct sim_sensor)
	{
		0, 1, "Package id 0", ZONE_CPU, 3, 80, 100, 1, -1
	};
	for (int i = 0; i < 12; i++)
		s->sensors[n++] = (struct sim_sensor)
		{
			0, i + 2, core_labels[i], ZONE_CPU, (i % 4) - 1.5, 80, 100, 1, -1
		};
	/* nct6798: board sensors, 0.5 degree resolution; CPUTIN sits near the CPU */
	for (int i = 0; i < 8; i++)
		s->sensors[n++] = (struct sim_sensor)
		{
			1, i + 1, nct_labels[i], i == 1 || i == 6 ? ZONE_CPU : ZONE_BOARD,
				i == 1 ? -8 : i * 0.7, i < 2 ? 80 : 0, 0, 0.5, -1
		};
	/* nvme */
	s->sensors[n++] = (struct sim_sensor)
	{
		2, 1, "Composite", ZONE_NVME, 0, 81.85, 84.85, 1, -1
	};
	s->sensors[n++] = (struct sim_sensor)
	{
		2, 2, "Sensor 1", ZONE_NVME, 2, 0, 0, 1, -1
	};
	s->sensors[n++] = (struct sim_sensor)
	{
		2, 3, "Sensor 2", ZONE_NVME, -3, 0, 0, 1, -1
	};
	/* amdgpu */
	s->sensors[n++] = (struct sim_sensor)
	{
		3, 1, "edge", ZONE_GPU, 0, 0, 100, 1, -1
	};
	s->sensors[n++] = (struct sim_sensor)
	{
		3, 2, "junction", ZONE_GPU, 6, 0, 110, 1, -1
	};
	s->sensors[n++] = (struct sim_sensor)
	{
		3, 3, "mem", ZONE_GPU, 2, 0, 105, 1, -1
	};
	s->nsensors = n;
	/* nct fans: CPU fan, pump header on the CPU; three case fans */
	s->fans[0] = (struct sim_fan)
	{
		1, 1, ZONE_CPU, 1800, -1, 128
	};
	s->fans[1] = (struct sim_fan)
	{
		1, 2, ZONE_CPU, 2400, -1, 128
	};
	s->fans[2] = (struct sim_fan)
	{
		1, 3, ZONE_BOARD, 1200, -1, 128
	};
	s->fans[3] = (struct sim_fan)
	{
		1, 4, ZONE_BOARD, 1200, -1, 128
	};
	s->fans[4] = (struct sim_fan)
	{
		1, 5, ZONE_BOARD, 1000, -1, 128
	};
	s->fans[5] = (struct sim_fan)
	{
		3, 1, ZONE_GPU, 3300, -1, 128
	};
	s->nfans = 6;
	return s;
}

/*
 * Write a fresh tree under dir (any earlier one is overwritten).
 * Returns 0, or -1 with errno set.
 */
int
pk_sim_create(const char *dir, unsigned seed)
{
	struct pk_sim *s = sim_layout(dir, seed);
	char	   *simdir;
	int			rc = 0;

	if (!s)
		return -1;
	simdir = pk_path_join(dir, "sim");
	if (!simdir || mkdirs(simdir) != 0)
		rc = -1;
	free(simdir);
	for (int c = 0; c < NCHIPS && rc == 0; c++)
	{
		char		rel[64],
					target[96];
		char	   *devdir,
				   *link;

		if (mkdirs(s->chip_dir[c]) != 0 || write_attr(s->chip_dir[c], "name", "%s\n", chip_names[c]) != 0)
		{
			rc = -1;
			break;
		}
		/* <dir>/devices/<device>, and hwmonN/device pointing at it */
		snprintf(rel, sizeof(rel), "devices/%s", chip_devices[c]);
		snprintf(target, sizeof(target), "../../../devices/%s", chip_devices[c]);
		devdir = pk_path_join(dir, rel);
		link = pk_path_join(s->chip_dir[c], "device");
		if (!devdir || !link || mkdirs(devdir) != 0 ||
			(symlink(target, link) != 0 && errno != EEXIST))
			rc = -1;
		free(devdir);
		free(link);
	}
	for (int i = 0; i < s->nsensors && rc == 0; i++)
	{
		struct sim_sensor *ss = &s->sensors[i];
		const char *d = s->chip_dir[ss->chip];
		char		name[32];

		snprintf(name, sizeof(name), "temp%d_input", ss->index);
		rc |= write_attr(d, name, "%ld\n", pk_round((40 + ss->offset) * 1000));
		if (ss->label)
		{
			snprintf(name, sizeof(name), "temp%d_label", ss->index);
			rc |= write_attr(d, name, "%s\n", ss->label);
		}
		if (ss->max > 0)
		{
			snprintf(name, sizeof(name), "temp%d_max", ss->index);
			rc |= write_attr(d, name, "%ld\n", pk_round(ss->max * 1000));
		}
		if (ss->crit > 0)
		{
			snprintf(name, sizeof(name), "temp%d_crit", ss->index);
			rc |= write_attr(d, name, "%ld\n", pk_round(ss->crit * 1000));
		}
	}
	for (int i = 0; i < s->nfans && rc == 0; i++)
	{
		struct sim_fan *f = &s->fans[i];
		const char *d = s->chip_dir[f->chip];
		char		name[32];

		snprintf(name, sizeof(name), "fan%d_input", f->index);
		rc |= write_attr(d, name, "%ld\n", pk_round(f->max_rpm / 2));
		snprintf(name, sizeof(name), "pwm%d", f->index);
		rc |= write_attr(d, name, "128\n");
		snprintf(name, sizeof(name), "pwm%d_enable", f->index);
		rc |= write_attr(d, name, "2\n");
		snprintf(name, sizeof(name), "pwm%d_mode", f->index);
		rc |= write_attr(d, name, "1\n");
	}
	pk_sim_free(s);
	return rc ? -1 : 0;
}

/*
 * Start animating the tree under dir, creating it first when it is not
 * there.  Returns NULL on error.
 */
struct pk_sim *
pk_sim_open(const char *dir, unsigned seed)
{
	struct pk_sim *s;
	char	   *probe = pk_path_join(dir, "class/hwmon/hwmon0/name");
	struct stat st;
	bool		exists = probe && stat(probe, &st) == 0;

	free(probe);
	if (!exists && pk_sim_create(dir, seed) != 0)
		return NULL;
	s = sim_layout(dir, seed);
	if (!s)
		return NULL;
	for (int z = 0; z < NZONES; z++)
	{
		double		p = zones[z].idle_power + 0.35 * zones[z].load_power;

		s->zone_temp[z] = AMBIENT + p / (zones[z].k0 + 0.5 * zones[z].k1);
	}
	return s;
}

static double
clamp(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * A smooth periodic wave in [-1, 1] with period 1 (Bhaskara's sine
 * approximation, close enough for a simulated load and free of libm).
 */
static double
wave(double phase)
{
	double		x = (phase - (double) (long) phase) * 2;	/* 0..2 half-periods */
	double		sign = x < 1 ? 1 : -1;
	double		p = (x < 1 ? x : x - 1) * 180;	/* degrees in 0..180 */

	return sign * 4 * p * (180 - p) / (40500 - p * (180 - p));
}

/* Load in 0..1: the sim/load file when present, else a slow wave. */
static double
load_now(struct pk_sim *s)
{
	long		pct;

	if (pk_read_long(s->load_path, &pct) == 0)
		return (pct < 0 ? 0 : pct > 100 ? 100 : pct) / 100.0;
	return clamp(0.35 + 0.25 * wave(s->t / 300) + 0.05 * noise(s), 0, 1);
}

/* Mean pwm (0..1) of the fans cooling a zone; board fans also help nvme. */
static double
zone_airflow(struct pk_sim *s, enum zone z)
{
	double		sum = 0;
	int			n = 0;

	for (int i = 0; i < s->nfans; i++)
		if (s->fans[i].zone == z || (z == ZONE_NVME && s->fans[i].zone == ZONE_BOARD))
		{
			sum += s->fans[i].pwm / 255.0;
			n++;
		}
	return n ? sum / n : 0;
}

/* Advance the model by dt seconds and write the changed values. */
void
pk_sim_step(struct pk_sim *s, double dt)
{
	double		load = load_now(s);

	s->t += dt;
	/* Fans first: what the hardware is doing now. */
	for (int i = 0; i < s->nfans; i++)
	{
		struct sim_fan *f = &s->fans[i];
		const char *d = s->chip_dir[f->chip];
		char		name[32];
		char	   *path;
		long		enable = 2,
					pwm = f->pwm,
					rpm;

		snprintf(name, sizeof(name), "pwm%d_enable", f->index);
		if ((path = pk_path_join(d, name)) != NULL)
		{
			pk_read_long(path, &enable);
			free(path);
		}
		snprintf(name, sizeof(name), "pwm%d", f->index);
		path = pk_path_join(d, name);
		if (enable == 1)
		{
			if (path)
				pk_read_long(path, &pwm);
		}
		else
		{
			/* Firmware: full speed for 0, else a curve 40 C -> 30 %, 75 C -> 100 %. */
			double		tz = s->zone_temp[f->zone];

			pwm = enable == 0 ? 255 :
				pk_round(255 * clamp(0.3 + 0.7 * (tz - 40) / 35, 0.3, 1));
			if (pwm != f->pwm && path)
				write_attr(d, name, "%ld\n", pwm);
		}
		free(path);
		f->pwm = pwm < 0 ? 0 : pwm > 255 ? 255 : pwm;
		rpm = f->pwm == 0 ? 0 : pk_round(f->max_rpm * f->pwm / 255.0 * (1 + 0.01 * noise(s)));
		if (labs(rpm - f->written_rpm) > 0)
		{
			snprintf(name, sizeof(name), "fan%d_input", f->index);
			if (write_attr(d, name, "%ld\n", rpm) == 0)
				f->written_rpm = rpm;
		}
	}
	/* Then temperatures. */
	for (int z = 0; z < NZONES; z++)
	{
		double		power = zones[z].idle_power + load * zones[z].load_power;
		double		eq = AMBIENT + power / (zones[z].k0 + zone_airflow(s, (enum zone) z) * zones[z].k1);

		/* First-order lag, integrated implicitly (stable for any dt). */
		s->zone_temp[z] += (eq - s->zone_temp[z]) * dt / (zones[z].tau + dt);
	}
	for (int i = 0; i < s->nsensors; i++)
	{
		struct sim_sensor *ss = &s->sensors[i];
		double		v = s->zone_temp[ss->zone] + ss->offset + 0.3 * noise(s);
		long		md = pk_round(pk_round(v / ss->resolution) * ss->resolution * 1000);

		if (md != ss->written)
		{
			char		name[32];

			snprintf(name, sizeof(name), "temp%d_input", ss->index);
			if (write_attr(s->chip_dir[ss->chip], name, "%ld\n", md) == 0)
				ss->written = md;
		}
	}
}

void
pk_sim_free(struct pk_sim *s)
{
	if (!s)
		return;
	for (int c = 0; c < NCHIPS; c++)
		free(s->chip_dir[c]);
	free(s->dir);
	free(s->load_path);
	free(s->sensors);
	free(s);
}
