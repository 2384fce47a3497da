/*
 * util.c - logging, clocks and small file helpers used by every part of
 * the agent.  sysfs and procfs files are tiny text files; these helpers read
 * them with a size bound and write them whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

int			pk_log_level = PK_LOG_INFO;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* Print one log line to stderr (journald adds time and unit). */
void
pk_log(int level, const char *fmt,...)
{
	va_list		ap;

	if (level > pk_log_level)
		return;
	fprintf(stderr, "pankha-agent: %s: ", level_names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Map a level name to PK_LOG_*, or -1 when it is not one. */
int
pk_log_level_parse(const char *name)
{
	if (strcasecmp(name, "warn") == 0)
		return PK_LOG_WARN;
	if (strcasecmp(name, "trace") == 0)
		return PK_LOG_DEBUG;	/* the server's finest level */
	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

/* Wall-clock time in epoch milliseconds. */
int64_t
pk_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic time in milliseconds, for intervals. */
int64_t
pk_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Return "dir/name" in fresh memory, or NULL when out of memory. */
char *
pk_path_join(const char *dir, const char *name)
{
	size_t		n = strlen(dir) + strlen(name) + 2;
	char	   *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/*
 * Read at most max bytes of a file into fresh NUL-terminated memory.
 * Returns NULL on error (errno set); a longer file is an error (EFBIG).
 */
char *
pk_read_text(const char *path, size_t max, size_t *len_out)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t		cap = 256,
				len = 0;
	char	   *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	if (!buf)
	{
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	for (;;)
	{
		ssize_t		n;

		if (len + 1 >= cap)
		{
			char	   *nb;

			if (cap > max)
			{
				free(buf);
				close(fd);
				errno = EFBIG;
				return NULL;
			}
			nb = realloc(buf, cap * 2);
			if (!nb)
			{
				free(buf);
				close(fd);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			free(buf);
			close(fd);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t) n;
		if (len > max)
		{
			free(buf);
			close(fd);
			errno = EFBIG;
			return NULL;
		}
	}
	close(fd);
	buf[len] = '\0';
	if (len_out)
		*len_out = len;
	return buf;
}

/* Read one integer from a sysfs attribute; 0 on success. */
int
pk_read_long(const char *path, long *value)
{
	char		buf[64];
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t		n;
	char	   *end;
	long		v;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n' && *end != ' '))
		return -1;
	*value = v;
	return 0;
}

/* Write one integer to a sysfs attribute, as echo does; 0 on success. */
int
pk_write_long(const char *path, long value)
{
	char		buf[32];
	int			fd = open(path, O_WRONLY | O_CLOEXEC);
	int			n = snprintf(buf, sizeof(buf), "%ld\n", value);
	ssize_t		w;

	if (fd < 0)
		return -1;
	w = write(fd, buf, (size_t) n);
	if (close(fd) != 0 || w != n)
		return -1;
	return 0;
}

/*
 * Rounding without libm: the agent keeps its mapped libraries (and so its
 * resident memory) to what libwebsockets needs anyway.
 */
long
pk_round(double v)
{
	return v >= 0 ? (long) (v + 0.5) : -(long) (-v + 0.5);
}

/* The smallest integer not below v. */
long
pk_ceil(double v)
{
	long		c = (long) v;

	return (double) c < v ? c + 1 : c;
}

/* Replace a file's contents atomically (write a sibling, then rename). */
int
pk_write_text_atomic(const char *path, const char *text)
{
	size_t		n = strlen(path) + 8;
	char	   *tmp = malloc(n);
	size_t		len = strlen(text);
	int			fd;
	ssize_t		w;

	if (!tmp)
		return -1;
	snprintf(tmp, n, "%s.tmp~", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
	{
		free(tmp);
		return -1;
	}
	w = write(fd, text, len);
	if (close(fd) != 0 || w != (ssize_t) len || rename(tmp, path) != 0)
	{
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
