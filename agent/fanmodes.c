/*
 * fanmodes.c - the record of each fan's original pwmN_enable, kept in the
 * state directory (--state-dir, systemd's StateDirectory) so that it
 * outlives the process.
 *
 * Why: the agent switches a fan to manual mode (pwm_enable 1) before it
 * writes a speed, and gives the original mode back on a clean stop.  An
 * agent killed without cleanup (SIGKILL, OOM, an abort) leaves the fan in
 * manual mode at a fixed duty.  Read from the hardware, the restarted
 * agent would take that 1 for the original and "restore" it on its next
 * clean stop, so the firmware would never get the fan back.  So the mode
 * found the first time a fan is driven is written here before anything
 * is written to the fan, and this file wins over what the hardware says.
 *
 * A restarted agent that finds records hands those fans back to their
 * recorded mode at once (it starts with every fan left to firmware, and
 * the crashed run's speed would otherwise stay with nothing watching).
 * A fan found in manual mode with no record is taken to have been left so
 * by a crashed agent (ours, or an older version without this file), and
 * firmware mode 2 is taken as its original.  A clean stop that has given
 * every fan back removes the file.
 *
 * File: one line per fan, "<fan id> <pwm_enable>", replaced atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define FANMODES_FILE "fan-modes"
#define FANMODES_MAX (64 * 1024)
/* pwm_enable of "automatic" on most hwmon drivers (nct6775, it87, amdgpu). */
#define FIRMWARE_MODE 2

static char *record_path(struct pk_agent *a);
static struct pk_fanmode *find_record(struct pk_agent *a, const char *id);
static int	add_record(struct pk_agent *a, const char *id, long enable);
static int	save(struct pk_agent *a);

static char *
record_path(struct pk_agent *a)
{
	if (!a->state_dir || !*a->state_dir)
		return NULL;
	return pk_path_join(a->state_dir, FANMODES_FILE);
}

static struct pk_fanmode *
find_record(struct pk_agent *a, const char *id)
{
	for (int i = 0; i < a->nfanmodes; i++)
		if (strcmp(a->fanmodes[i].id, id) == 0)
			return &a->fanmodes[i];
	return NULL;
}

static int
add_record(struct pk_agent *a, const char *id, long enable)
{
	struct pk_fanmode *grown;

	grown = realloc(a->fanmodes, sizeof(*grown) * (size_t) (a->nfanmodes + 1));
	if (!grown)
		return -1;
	a->fanmodes = grown;
	snprintf(grown[a->nfanmodes].id, sizeof(grown[a->nfanmodes].id), "%s", id);
	grown[a->nfanmodes].enable = enable;
	a->nfanmodes++;
	return 0;
}

/* Write the records (fsynced, then renamed over the old file); 0 on success. */
static int
save(struct pk_agent *a)
{
	char	   *path = record_path(a);
	char	   *tmp = NULL;
	char	   *text = NULL;
	size_t		len = 0,
				cap = 0;
	int			fd = -1,
				rc = -1;

	if (!path)
		return 0;
	for (int i = 0; i < a->nfanmodes; i++)
	{
		char		line[PK_ID_MAX + 32];
		int			n = snprintf(line, sizeof(line), "%s %ld\n", a->fanmodes[i].id, a->fanmodes[i].enable);

		if (len + (size_t) n + 1 > cap)
		{
			char	   *nb = realloc(text, cap = (len + (size_t) n + 1) * 2);

			if (!nb)
				goto done;
			text = nb;
		}
		memcpy(text + len, line, (size_t) n);
		len += (size_t) n;
	}
	tmp = malloc(strlen(path) + 8);
	if (!tmp)
		goto done;
	sprintf(tmp, "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || (len && write(fd, text, len) != (ssize_t) len) || fsync(fd) != 0)
		goto done;
	if (close(fd) != 0)
	{
		fd = -1;
		goto done;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto done;
	rc = 0;
done:
	if (rc != 0)
	{
		pk_log(PK_LOG_WARN, "cannot record the fans' original modes in %s: %s "
			   "(a crashed agent's fans may stay in manual mode)", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		if (tmp)
			unlink(tmp);
	}
	free(text);
	free(tmp);
	free(path);
	return rc;
}

/*
 * At start, after the first scan: read the records a previous run left
 * and give those fans their recorded mode back now.
 */
void
pk_fanmodes_load(struct pk_agent *a)
{
	char	   *path = record_path(a);
	size_t		len;
	char	   *text,
			   *line,
			   *save_ptr = NULL;

	if (!path)
		return;
	text = pk_read_text(path, FANMODES_MAX, &len);
	if (!text)
	{
		if (errno != ENOENT)
			pk_log(PK_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
		free(path);
		return;
	}
	for (line = strtok_r(text, "\n", &save_ptr); line; line = strtok_r(NULL, "\n", &save_ptr))
	{
		char		id[PK_ID_MAX + 1];
		long		enable;
		struct pk_fan *f;

		if (sscanf(line, "%64s %ld", id, &enable) != 2 || enable < 0 || enable > 255 ||
			find_record(a, id))
		{
			pk_log(PK_LOG_WARN, "%s: ignoring the line \"%.80s\"", path, line);
			continue;
		}
		if (add_record(a, id, enable) != 0)
			break;
		f = pk_hw_fan(&a->hw, id);
		if (!f || !f->enable_path)
			continue;
		f->orig_enable = enable;
		pk_log(PK_LOG_WARN, "fan %s: the previous run did not stop cleanly; "
			   "giving the fan its original pwm_enable %ld back", id, enable);
		if (pk_write_long(f->enable_path, enable) != 0)
		{
			pk_log(PK_LOG_ERROR, "fan %s: cannot write %s: %s; leaving it at full speed",
				   id, f->enable_path, strerror(errno));
			if (f->pwm_path)
				pk_write_long(f->pwm_path, 255);
		}
	}
	free(text);
	free(path);
}

/*
 * Before the agent first writes a fan: its original mode, from the record
 * when there is one, else from the hardware (manual counts as firmware),
 * recorded before the caller writes anything.  Returns the mode, or -1
 * when the fan has no pwm_enable.
 */
long
pk_fanmodes_original(struct pk_agent *a, struct pk_fan *f)
{
	struct pk_fanmode *r = find_record(a, f->id);
	long		enable = -1;

	if (r)
		return r->enable;
	if (!f->enable_path || pk_read_long(f->enable_path, &enable) != 0)
		return -1;
	if (enable == 1)
	{
		pk_log(PK_LOG_WARN, "fan %s is in manual mode and no original mode is recorded: "
			   "taking firmware mode %d as its original", f->id, FIRMWARE_MODE);
		enable = FIRMWARE_MODE;
	}
	if (add_record(a, f->id, enable) == 0)
		save(a);
	return enable;
}

/*
 * After a clean stop has given the fans back: drop the records of the
 * fans restored (restored[i] for a->fanmodes[i]) and keep the others.
 */
void
pk_fanmodes_done(struct pk_agent *a, const bool *restored)
{
	char	   *path = record_path(a);
	int			n = 0;

	for (int i = 0; i < a->nfanmodes; i++)
		if (!restored || !restored[i])
			a->fanmodes[n++] = a->fanmodes[i];
	a->nfanmodes = n;
	if (path)
	{
		if (n == 0)
		{
			if (unlink(path) != 0 && errno != ENOENT)
				pk_log(PK_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
		}
		else
			save(a);
	}
	free(path);
}

void
pk_fanmodes_free(struct pk_agent *a)
{
	free(a->fanmodes);
	a->fanmodes = NULL;
	a->nfanmodes = 0;
}
