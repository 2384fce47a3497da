/*
 * procstat.c - the host figures of a data frame's systemHealth: CPU usage
 * from /proc/stat deltas, memory from /proc/meminfo, root filesystem usage
 * from statvfs, network throughput from /proc/net/dev deltas and the 1-minute
 * load average.  The parsers take text so the tests can feed them directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent.h"

#define PROC_FILE_MAX (1024 * 1024)

static char *read_proc(const struct pk_proc *p, const char *name);

/*
 * Parse the aggregate "cpu" line of /proc/stat into total and idle jiffies
 * (idle includes iowait).  0 on success, -1 when the line is missing.
 */
int
pk_parse_stat(const char *text, unsigned long long *total, unsigned long long *idle)
{
	unsigned long long v[10] = {0};
	int			n;

	if (strncmp(text, "cpu ", 4) != 0)
	{
		text = strstr(text, "\ncpu ");
		if (!text)
			return -1;
		text++;
	}
	n = sscanf(text + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	if (n < 4)
		return -1;
	/* guest and guest_nice (v[8], v[9]) are already counted in user/nice. */
	*total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	*idle = v[3] + v[4];
	return 0;
}

/* Parse MemTotal/MemAvailable into the percentage in use. */
int
pk_parse_meminfo(const char *text, double *used_percent)
{
	const char *t = strstr(text, "MemTotal:");
	const char *a = strstr(text, "MemAvailable:");
	unsigned long long total,
				avail;

	if (!t || !a || sscanf(t + 9, "%llu", &total) != 1 || sscanf(a + 13, "%llu", &avail) != 1 ||
		total == 0 || avail > total)
		return -1;
	*used_percent = 100.0 * (double) (total - avail) / (double) total;
	return 0;
}

/* Sum receive and transmit bytes over every interface except loopback. */
int
pk_parse_netdev(const char *text, unsigned long long *rx, unsigned long long *tx)
{
	const char *line = text;
	int			found = 0;

	*rx = *tx = 0;
	while (line && *line)
	{
		const char *colon = strchr(line, ':');
		const char *eol = strchr(line, '\n');
		unsigned long long r,
					t,
					skip;
		char		name[64];
		const char *s = line;
		size_t		nl;

		if (colon && (!eol || colon < eol))
		{
			while (*s == ' ')
				s++;
			nl = (size_t) (colon - s);
			if (nl < sizeof(name))
			{
				memcpy(name, s, nl);
				name[nl] = '\0';
				if (strcmp(name, "lo") != 0 &&
					sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu",
						   &r, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &t) == 9)
				{
					*rx += r;
					*tx += t;
					found++;
				}
			}
		}
		line = eol ? eol + 1 : NULL;
	}
	return found > 0 || strstr(text, "Inter-") ? 0 : -1;
}

/* First field of /proc/loadavg. */
int
pk_parse_loadavg(const char *text, double *load1)
{
	return sscanf(text, "%lf", load1) == 1 && *load1 >= 0 ? 0 : -1;
}

/* Prepare p; figures read -1 until sampled. */
void
pk_proc_init(struct pk_proc *p, const char *proc_root, const char *disk_path)
{
	memset(p, 0, sizeof(*p));
	p->proc_root = strdup(proc_root);
	p->disk_path = strdup(disk_path);
	p->cpu_usage = p->mem_usage = p->disk_usage = -1;
	p->rx_rate = p->tx_rate = p->load1 = -1;
}

void
pk_proc_free(struct pk_proc *p)
{
	free(p->proc_root);
	free(p->disk_path);
	p->proc_root = p->disk_path = NULL;
}

static char *
read_proc(const struct pk_proc *p, const char *name)
{
	char	   *path,
			   *text;

	if (!p->proc_root)
		return NULL;
	path = pk_path_join(p->proc_root, name);
	if (!path)
		return NULL;
	text = pk_read_text(path, PROC_FILE_MAX, NULL);
	free(path);
	return text;
}

/* Take a sample; rates and CPU usage need two samples. */
void
pk_proc_sample(struct pk_proc *p, int64_t mono_ms)
{
	char	   *text;
	struct statvfs sv;

	if ((text = read_proc(p, "stat")) != NULL)
	{
		unsigned long long total,
					idle;

		if (pk_parse_stat(text, &total, &idle) == 0)
		{
			if (p->have_cpu && total > p->cpu_total && idle >= p->cpu_idle)
			{
				unsigned long long dt = total - p->cpu_total,
							di = idle - p->cpu_idle;

				p->cpu_usage = di >= dt ? 0 : 100.0 * (double) (dt - di) / (double) dt;
			}
			p->cpu_total = total;
			p->cpu_idle = idle;
			p->have_cpu = true;
		}
		free(text);
	}
	if ((text = read_proc(p, "meminfo")) != NULL)
	{
		if (pk_parse_meminfo(text, &p->mem_usage) != 0)
			p->mem_usage = -1;
		free(text);
	}
	if ((text = read_proc(p, "net/dev")) != NULL)
	{
		unsigned long long rx,
					tx;

		if (pk_parse_netdev(text, &rx, &tx) == 0)
		{
			if (p->have_net && mono_ms > p->net_ms && rx >= p->net_rx && tx >= p->net_tx)
			{
				double		secs = (double) (mono_ms - p->net_ms) / 1000.0;

				p->rx_rate = (double) (rx - p->net_rx) / secs;
				p->tx_rate = (double) (tx - p->net_tx) / secs;
			}
			p->net_rx = rx;
			p->net_tx = tx;
			p->net_ms = mono_ms;
			p->have_net = true;
		}
		free(text);
	}
	if ((text = read_proc(p, "loadavg")) != NULL)
	{
		if (pk_parse_loadavg(text, &p->load1) != 0)
			p->load1 = -1;
		free(text);
	}
	if (p->disk_path && statvfs(p->disk_path, &sv) == 0 && sv.f_blocks > 0)
	{
		/* Like df: used / (used + available to users). */
		double		used = (double) (sv.f_blocks - sv.f_bfree);
		double		avail = (double) sv.f_bavail;

		p->disk_usage = used + avail > 0 ? 100.0 * used / (used + avail) : -1;
	}
}

/* Resident set size of this process in KiB, from <proc>/self/status. */
long
pk_self_rss_kb(const char *proc_root)
{
	char	   *path = pk_path_join(proc_root, "self/status");
	char	   *text = path ? pk_read_text(path, PROC_FILE_MAX, NULL) : NULL;
	const char *line;
	long		kb = -1;

	free(path);
	if (text && (line = strstr(text, "VmRSS:")) != NULL)
		kb = strtol(line + 6, NULL, 10);
	free(text);
	return kb;
}
