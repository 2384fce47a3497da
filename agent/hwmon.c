/*
 * hwmon.c - discovery of temperature sensors and fans under
 * <sysfs-root>/class/hwmon, following the kernel's sysfs-interface ABI
 * (tempN_input in millidegrees, fanN_input in rpm, pwmN 0..255,
 * pwmN_enable 0 = full, 1 = manual, 2+ = automatic).
 *
 * hwmonN numbers change between boots, so ids are built from the chip name
 * and the channel's label (or its index when there is no label).  Two chips
 * of the same name are told apart by their device link, which is stable for
 * a given slot.  A re-scan keeps the control state of fans it finds again.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* One hwmonN directory seen during a scan. */
struct chip
{
	char	   *dir;			/* full path */
	char	   *entry;			/* hwmonN */
	char	   *name;			/* contents of "name" */
	char	   *device;			/* basename of the device link, or NULL */
	char	   *prefix;			/* name, made unique among chips */
};

static void free_chip(struct chip *c);
static int	cmp_chip(const void *a, const void *b);
static int	cmp_long(const void *a, const void *b);
static const char *chip_kind(const char *name);
static char *read_label(const char *dir, const char *fmt, long idx);
static int	channel_index(const char *entry, const char *prefix, const char *suffix, long *idx);
static int	scan_chip(struct pk_hw *hw, struct chip *c, struct pk_sensor **sensors, int *ns,
					  struct pk_fan **fans, int *nf);
static char *make_signature(const char *hwmon_dir);
static void make_unique(char *id, size_t idlen, bool (*taken) (void *, const char *), void *ctx);

/* Prepare hw for the tree under sysfs_root; 0 on success. */
int
pk_hw_init(struct pk_hw *hw, const char *sysfs_root)
{
	memset(hw, 0, sizeof(*hw));
	hw->hwmon_dir = pk_path_join(sysfs_root, "class/hwmon");
	return hw->hwmon_dir ? 0 : -1;
}

/*
 * Turn "chip" + "what" into an id of lower-case letters, digits and single
 * underscores, at most outlen-1 (<= 64) bytes.
 */
void
pk_sanitize_id(char *out, size_t outlen, const char *chip, const char *what)
{
	size_t		n = 0;
	bool		sep = true;		/* suppress leading and repeated '_' */
	const char *parts[2] = {chip, what};

	for (int p = 0; p < 2; p++)
	{
		if (!parts[p])
			continue;
		if (p == 1 && n > 0 && !sep && n + 1 < outlen)
		{
			out[n++] = '_';
			sep = true;
		}
		for (const char *s = parts[p]; *s && n + 1 < outlen; s++)
		{
			unsigned char ch = (unsigned char) *s;

			if (isalnum(ch))
			{
				out[n++] = (char) tolower(ch);
				sep = false;
			}
			else if (!sep)
			{
				out[n++] = '_';
				sep = true;
			}
		}
	}
	while (n > 0 && out[n - 1] == '_')
		n--;
	if (n == 0 && outlen > 1)
		out[n++] = 'x';
	out[n] = '\0';
}

static void
free_chip(struct chip *c)
{
	free(c->dir);
	free(c->entry);
	free(c->name);
	free(c->device);
	free(c->prefix);
}

/* Chips sort by name, then device, then hwmon entry, for stable ordering. */
static int
cmp_chip(const void *a, const void *b)
{
	const struct chip *x = a,
			   *y = b;
	int			r = strcmp(x->name, y->name);

	if (r)
		return r;
	if (x->device && y->device && (r = strcmp(x->device, y->device)) != 0)
		return r;
	return strcmp(x->entry, y->entry);
}

static int
cmp_long(const void *a, const void *b)
{
	long		x = *(const long *) a,
				y = *(const long *) b;

	return (x > y) - (x < y);
}

/* What kind of sensor a chip carries, from its driver name. */
static const char *
chip_kind(const char *name)
{
	static const struct
	{
		const char *prefix;
		const char *kind;
	}			kinds[] = {
		{"coretemp", "cpu"}, {"k10temp", "cpu"}, {"k8temp", "cpu"}, {"zenpower", "cpu"},
		{"cpu", "cpu"}, {"amdgpu", "gpu"}, {"radeon", "gpu"}, {"nouveau", "gpu"},
		{"i915", "gpu"}, {"nvme", "nvme"}, {"drivetemp", "disk"}, {"acpitz", "acpi"},
		{"nct", "motherboard"}, {"it8", "motherboard"}, {"w83", "motherboard"},
		{"asus", "motherboard"}, {"dell", "motherboard"}, {"thinkpad", "motherboard"},
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strncmp(name, kinds[i].prefix, strlen(kinds[i].prefix)) == 0)
			return kinds[i].kind;
	return "other";
}

/* Read a channel label such as temp1_label; NULL when absent. */
static char *
read_label(const char *dir, const char *fmt, long idx)
{
	char		name[64];
	char	   *path,
			   *text;

	snprintf(name, sizeof(name), fmt, idx);
	path = pk_path_join(dir, name);
	if (!path)
		return NULL;
	text = pk_read_text(path, 256, NULL);
	free(path);
	if (text)
	{
		text[strcspn(text, "\n")] = '\0';
		if (!*text)
		{
			free(text);
			text = NULL;
		}
	}
	return text;
}

/* Match "<prefix><digits><suffix>" exactly; 0 and *idx on a match. */
static int
channel_index(const char *entry, const char *prefix, const char *suffix, long *idx)
{
	size_t		pl = strlen(prefix);
	const char *p = entry + pl;
	char	   *end;

	if (strncmp(entry, prefix, pl) != 0 || !isdigit((unsigned char) *p))
		return -1;
	errno = 0;
	*idx = strtol(p, &end, 10);
	if (errno || *idx < 0 || *idx > 9999 || strcmp(end, suffix) != 0)
		return -1;
	return 0;
}

struct id_set
{
	struct pk_sensor *sensors;
	int			ns;
	struct pk_fan *fans;
	int			nf;
	bool		fan_ids;
};

static bool
id_taken(void *ctx, const char *id)
{
	struct id_set *s = ctx;

	if (s->fan_ids)
	{
		for (int i = 0; i < s->nf; i++)
			if (strcmp(s->fans[i].id, id) == 0)
				return true;
	}
	else
	{
		for (int i = 0; i < s->ns; i++)
			if (strcmp(s->sensors[i].id, id) == 0)
				return true;
	}
	return false;
}

/* Append _2, _3, ... to id until taken() says it is free. */
static void
make_unique(char *id, size_t idlen, bool (*taken) (void *, const char *), void *ctx)
{
	char		base[PK_ID_MAX + 1];

	if (!taken(ctx, id))
		return;
	snprintf(base, sizeof(base), "%s", id);
	for (int n = 2; n < 10000; n++)
	{
		char		suffix[16];
		size_t		sl = (size_t) snprintf(suffix, sizeof(suffix), "_%d", n);
		size_t		bl = strlen(base);

		if (bl + sl >= idlen)
			bl = idlen - 1 - sl;
		snprintf(id, idlen, "%.*s%s", (int) bl, base, suffix);
		if (!taken(ctx, id))
			return;
	}
}

/* Collect the channels of one chip into the growing arrays. */
static int
scan_chip(struct pk_hw *hw, struct chip *c, struct pk_sensor **sensors, int *ns,
		  struct pk_fan **fans, int *nf)
{
	DIR		   *d = opendir(c->dir);
	struct dirent *de;
	long	   *temps = NULL,
			   *fanidx = NULL;
	int			nt = 0,
				nfi = 0,
				capt = 0,
				capf = 0;
	int			rc = 0;

	if (!d)
		return 0;				/* the chip went away; not an error */
	while ((de = readdir(d)) != NULL)
	{
		long		idx;
		bool		is_temp = channel_index(de->d_name, "temp", "_input", &idx) == 0;
		bool		is_fan = !is_temp && (channel_index(de->d_name, "fan", "_input", &idx) == 0 ||
										  channel_index(de->d_name, "pwm", "", &idx) == 0);
		long	  **arr = is_temp ? &temps : &fanidx;
		int		   *n = is_temp ? &nt : &nfi,
				   *cap = is_temp ? &capt : &capf;
		bool		dup = false;

		if (!is_temp && !is_fan)
			continue;
		for (int i = 0; i < *n; i++)
			if ((*arr)[i] == idx)
				dup = true;
		if (dup)
			continue;
		if (*n == *cap)
		{
			int			nc = *cap ? *cap * 2 : 8;
			long	   *na = realloc(*arr, sizeof(long) * (size_t) nc);

			if (!na)
			{
				rc = -1;
				goto out;
			}
			*arr = na;
			*cap = nc;
		}
		(*arr)[(*n)++] = idx;
	}
	/* a chip without temperatures or fans has NULL arrays, which qsort may not take */
	if (nt)
		qsort(temps, (size_t) nt, sizeof(long), cmp_long);
	if (nfi)
		qsort(fanidx, (size_t) nfi, sizeof(long), cmp_long);

	for (int i = 0; i < nt; i++)
	{
		struct pk_sensor *s;
		struct pk_sensor *grown = realloc(*sensors, sizeof(**sensors) * (size_t) (*ns + 1));
		char		name[64],
				   *label,
				   *path;
		long		v;
		struct id_set ids;

		if (!grown)
		{
			rc = -1;
			goto out;
		}
		*sensors = grown;
		s = &(*sensors)[*ns];
		memset(s, 0, sizeof(*s));
		snprintf(name, sizeof(name), "temp%ld_input", temps[i]);
		s->input_path = pk_path_join(c->dir, name);
		if (!s->input_path)
		{
			rc = -1;
			goto out;
		}
		label = read_label(c->dir, "temp%ld_label", temps[i]);
		snprintf(name, sizeof(name), "temp%ld", temps[i]);
		pk_sanitize_id(s->id, sizeof(s->id), c->prefix, label ? label : name);
		free(label);
		ids = (struct id_set)
		{
			*sensors, *ns, NULL, 0, false
		};
		make_unique(s->id, sizeof(s->id), id_taken, &ids);
		s->kind = chip_kind(c->name);
		snprintf(name, sizeof(name), "temp%ld_max", temps[i]);
		if ((path = pk_path_join(c->dir, name)) != NULL)
		{
			if (pk_read_long(path, &v) == 0)
			{
				s->max_temp = v / 1000.0;
				s->has_max = true;
			}
			free(path);
		}
		snprintf(name, sizeof(name), "temp%ld_crit", temps[i]);
		if ((path = pk_path_join(c->dir, name)) != NULL)
		{
			if (pk_read_long(path, &v) == 0)
			{
				s->crit_temp = v / 1000.0;
				s->has_crit = true;
			}
			free(path);
		}
		(*ns)++;
	}

	for (int i = 0; i < nfi; i++)
	{
		struct pk_fan *f;
		struct pk_fan *grown = realloc(*fans, sizeof(**fans) * (size_t) (*nf + 1));
		char		name[64],
				   *label;
		struct id_set ids;

		if (!grown)
		{
			rc = -1;
			goto out;
		}
		*fans = grown;
		f = &(*fans)[*nf];
		memset(f, 0, sizeof(*f));
		f->pwm = -1;
		f->orig_enable = -1;
		f->written_pwm = -1;
		f->output = -1;
		f->target = -1;
		f->status = "auto";
		snprintf(name, sizeof(name), "fan%ld_input", fanidx[i]);
		f->rpm_path = pk_path_join(c->dir, name);
		if (f->rpm_path && access(f->rpm_path, R_OK) != 0)
		{
			free(f->rpm_path);
			f->rpm_path = NULL;
		}
		snprintf(name, sizeof(name), "pwm%ld", fanidx[i]);
		f->pwm_path = pk_path_join(c->dir, name);
		if (f->pwm_path && access(f->pwm_path, F_OK) != 0)
		{
			free(f->pwm_path);
			f->pwm_path = NULL;
		}
		snprintf(name, sizeof(name), "pwm%ld_enable", fanidx[i]);
		f->enable_path = pk_path_join(c->dir, name);
		if (f->enable_path && access(f->enable_path, F_OK) != 0)
		{
			free(f->enable_path);
			f->enable_path = NULL;
		}
		label = read_label(c->dir, "fan%ld_label", fanidx[i]);
		snprintf(name, sizeof(name), "fan%ld", fanidx[i]);
		pk_sanitize_id(f->id, sizeof(f->id), c->prefix, label ? label : name);
		free(label);
		ids = (struct id_set)
		{
			NULL, 0, *fans, *nf, true
		};
		make_unique(f->id, sizeof(f->id), id_taken, &ids);
		(*nf)++;
	}
out:
	closedir(d);
	free(temps);
	free(fanidx);
	(void) hw;
	return rc;
}

/*
 * "hwmon0=coretemp@coretemp.0;hwmon1=nvme@0000:01:00.0;..." for the current
 * tree, or NULL.  The device link is in it, so two chips of one name that
 * swap numbers count as a change (audit 11).
 */
static char *
make_signature(const char *hwmon_dir)
{
	DIR		   *d = opendir(hwmon_dir);
	struct dirent *de;
	char	   *sig = strdup("");
	size_t		len = 0;

	if (!d || !sig)
	{
		if (d)
			closedir(d);
		free(sig);
		return NULL;
	}
	while ((de = readdir(d)) != NULL)
	{
		char	   *dir,
				   *namepath,
				   *name = NULL,
				   *grown;
		size_t		add;

		if (strncmp(de->d_name, "hwmon", 5) != 0)
			continue;
		dir = pk_path_join(hwmon_dir, de->d_name);
		namepath = dir ? pk_path_join(dir, "name") : NULL;
		char		devlink[256] = "";
		char	   *devpath = dir ? pk_path_join(dir, "device") : NULL;
		ssize_t		ll;

		if (namepath)
			name = pk_read_text(namepath, 256, NULL);
		if (devpath && (ll = readlink(devpath, devlink, sizeof(devlink) - 1)) > 0)
			devlink[ll] = '\0';
		free(devpath);
		free(namepath);
		free(dir);
		add = strlen(de->d_name) + (name ? strlen(name) : 0) + strlen(devlink) + 4;
		grown = realloc(sig, len + add);
		if (!grown)
		{
			free(name);
			free(sig);
			closedir(d);
			return NULL;
		}
		sig = grown;
		len += (size_t) snprintf(sig + len, add, "%s=%s@%s;", de->d_name, name ? name : "", devlink);
		free(name);
	}
	closedir(d);
	return sig;
}

/*
 * True when hwmon entries or chip names differ from the last scan; cheap
 * enough to call every tick.  (readdir order is not sorted, but it is stable
 * for an unchanged directory.)
 */
bool
pk_hw_changed(struct pk_hw *hw)
{
	char	   *sig = make_signature(hw->hwmon_dir);
	bool		changed;

	if (!sig)
		return false;
	changed = !hw->signature || strcmp(sig, hw->signature) != 0;
	free(sig);
	return changed;
}

static void
free_fan_paths(struct pk_fan *f)
{
	free(f->rpm_path);
	free(f->pwm_path);
	free(f->enable_path);
}

/*
 * (Re-)discover every sensor and fan.  Fans found again keep their mode,
 * profile and remembered pwm_enable; fans that vanished lose them (their
 * hardware is gone).  Returns 0, or -1 when out of memory (hw unchanged).
 */
int
pk_hw_scan(struct pk_hw *hw)
{
	DIR		   *d;
	struct dirent *de;
	struct chip *chips = NULL;
	int			nchips = 0;
	struct pk_sensor *sensors = NULL;
	struct pk_fan *fans = NULL;
	int			ns = 0,
				nf = 0;
	char	   *sig = make_signature(hw->hwmon_dir);
	int			rc = 0;

	d = opendir(hw->hwmon_dir);
	if (!d)
		pk_log(PK_LOG_WARN, "cannot open %s: %s", hw->hwmon_dir, strerror(errno));
	while (d && (de = readdir(d)) != NULL)
	{
		struct chip *c,
				   *grown;
		char	   *namepath;
		char		link[PATH_MAX];
		ssize_t		ll;
		char	   *devpath;

		if (strncmp(de->d_name, "hwmon", 5) != 0)
			continue;
		grown = realloc(chips, sizeof(*chips) * (size_t) (nchips + 1));
		if (!grown)
		{
			rc = -1;
			break;
		}
		chips = grown;
		c = &chips[nchips];
		memset(c, 0, sizeof(*c));
		c->entry = strdup(de->d_name);
		c->dir = pk_path_join(hw->hwmon_dir, de->d_name);
		namepath = c->dir ? pk_path_join(c->dir, "name") : NULL;
		if (!c->entry || !c->dir || !namepath)
		{
			free(namepath);
			free_chip(c);
			rc = -1;
			break;
		}
		c->name = pk_read_text(namepath, 256, NULL);
		free(namepath);
		if (!c->name)
		{
			free_chip(c);		/* no name: not a usable chip */
			continue;
		}
		c->name[strcspn(c->name, "\n")] = '\0';
		devpath = pk_path_join(c->dir, "device");
		if (devpath && (ll = readlink(devpath, link, sizeof(link) - 1)) > 0)
		{
			link[ll] = '\0';
			c->device = strdup(strrchr(link, '/') ? strrchr(link, '/') + 1 : link);
		}
		free(devpath);
		nchips++;
	}
	if (d)
		closedir(d);

	if (rc == 0)
	{
		qsort(chips, (size_t) nchips, sizeof(*chips), cmp_chip);
		/* Chips sharing a name get their ordinal appended: nvme, nvme_2. */
		for (int i = 0; i < nchips && rc == 0; i++)
		{
			int			ord = 1;

			for (int j = 0; j < i; j++)
				if (strcmp(chips[j].name, chips[i].name) == 0)
					ord++;
			if (ord == 1)
				chips[i].prefix = strdup(chips[i].name);
			else
			{
				size_t		n = strlen(chips[i].name) + 16;

				chips[i].prefix = malloc(n);
				if (chips[i].prefix)
					snprintf(chips[i].prefix, n, "%s_%d", chips[i].name, ord);
			}
			if (!chips[i].prefix)
				rc = -1;
		}
	}
	for (int i = 0; i < nchips && rc == 0; i++)
		rc = scan_chip(hw, &chips[i], &sensors, &ns, &fans, &nf);
	for (int i = 0; i < nchips; i++)
		free_chip(&chips[i]);
	free(chips);

	if (rc != 0)
	{
		for (int i = 0; i < ns; i++)
			free(sensors[i].input_path);
		for (int i = 0; i < nf; i++)
			free_fan_paths(&fans[i]);
		free(sensors);
		free(fans);
		free(sig);
		pk_log(PK_LOG_ERROR, "out of memory while scanning %s", hw->hwmon_dir);
		return -1;
	}

	/*
	 * Sensors found again keep what their last frame said of them, so a
	 * rescan sends the static fields only of new or changed sensors.
	 */
	for (int i = 0; i < ns; i++)
	{
		struct pk_sensor *old = pk_hw_sensor(hw, sensors[i].id);

		if (!old)
			continue;
		sensors[i].meta_sent = old->meta_sent;
		sensors[i].sent_kind = old->sent_kind;
		sensors[i].sent_max = old->sent_max;
		sensors[i].sent_crit = old->sent_crit;
	}

	/* Carry control state over to fans found again. */
	for (int i = 0; i < nf; i++)
	{
		struct pk_fan *old = pk_hw_fan(hw, fans[i].id);

		if (!old)
			continue;
		fans[i].orig_enable = old->orig_enable;
		fans[i].touched = old->touched;
		fans[i].mode = old->mode;
		fans[i].manual_speed = old->manual_speed;
		fans[i].profile = old->profile;
		fans[i].output = old->output;
		fans[i].target = old->target;
		fans[i].written_pwm = old->written_pwm;
		fans[i].status = old->status;
		fans[i].reasserts = old->reasserts;
		old->profile = NULL;
	}
	pk_hw_free(hw);
	hw->sensors = sensors;
	hw->nsensors = ns;
	hw->fans = fans;
	hw->nfans = nf;
	free(hw->signature);
	hw->signature = sig;
	pk_log(PK_LOG_INFO, "found %d temperature sensors and %d fans under %s",
		   ns, nf, hw->hwmon_dir);
	return 0;
}

/* Read every temperature, rpm and pwm value. */
void
pk_hw_read(struct pk_hw *hw)
{
	for (int i = 0; i < hw->nsensors; i++)
	{
		struct pk_sensor *s = &hw->sensors[i];
		long		v;

		s->valid = pk_read_long(s->input_path, &v) == 0;
		if (s->valid)
			s->temp = v / 1000.0;
	}
	for (int i = 0; i < hw->nfans; i++)
	{
		struct pk_fan *f = &hw->fans[i];
		long		v;

		if (f->rpm_path && pk_read_long(f->rpm_path, &v) == 0)
			f->rpm = v;
		f->pwm = (f->pwm_path && pk_read_long(f->pwm_path, &v) == 0 && v >= 0 && v <= 255) ? v : -1;
	}
}

/* Look a sensor up by id. */
struct pk_sensor *
pk_hw_sensor(struct pk_hw *hw, const char *id)
{
	for (int i = 0; i < hw->nsensors; i++)
		if (strcmp(hw->sensors[i].id, id) == 0)
			return &hw->sensors[i];
	return NULL;
}

/* Look a fan up by id. */
struct pk_fan *
pk_hw_fan(struct pk_hw *hw, const char *id)
{
	for (int i = 0; i < hw->nfans; i++)
		if (strcmp(hw->fans[i].id, id) == 0)
			return &hw->fans[i];
	return NULL;
}

/* Free a profile and everything it owns. */
void
pk_profile_free(struct pk_profile *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->temps);
	free(p->speeds);
	free(p);
}

/* Free the sensor and fan lists (not hwmon_dir/signature). */
void
pk_hw_free(struct pk_hw *hw)
{
	for (int i = 0; i < hw->nsensors; i++)
		free(hw->sensors[i].input_path);
	for (int i = 0; i < hw->nfans; i++)
	{
		free_fan_paths(&hw->fans[i]);
		pk_profile_free(hw->fans[i].profile);
	}
	free(hw->sensors);
	free(hw->fans);
	hw->sensors = NULL;
	hw->fans = NULL;
	hw->nsensors = hw->nfans = 0;
}
