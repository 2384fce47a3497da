/*
 * buffer.c - the bounded buffer of data frames the server has not yet
 * acknowledged.  Frames leave it only when an ack covers their seq, or,
 * when it is full, oldest first (counted in `dropped`).  After a reconnect
 * the link re-sends what is left, in seq order, so an outage leaves no gap.
 *
 * With a persistence file every change is appended as one line:
 *   N <seq>          next seq to use (written at compaction)
 *   F <seq> <json>   a frame was buffered
 *   A <seq>          frames up to seq were acknowledged
 *   X <seq>          frames up to seq were dropped (buffer full)
 * and the file is rewritten from memory when it holds mostly dead lines.
 * Loading replays it, so a restarted agent re-sends what it had not got
 * acknowledged and continues the seq counter.
 *
 * The bounds are the byte bound, a frame count and an age (--buffer-seconds):
 * none of them follows the update interval, so a config_update that changes
 * the interval never drops a frame that is waiting for its ack (security
 * review L3).  The file is read a line at a time, each line bounded, and
 * what it holds beyond the bounds is dropped oldest first as it is read,
 * counted and logged, so loading never needs more memory than the buffer
 * itself (L14: the unit runs under MemoryMax=64M).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* Longest line of the persistence file (a frame is at most 1 MiB on the wire). */
#define PK_BUFFER_LINE_MAX ((size_t) 2 * 1024 * 1024)
/* How much of the file is read at once. */
#define PK_BUFFER_READ_CHUNK 65536

static void drop_oldest(struct pk_buffer *b);
static int	store(struct pk_buffer *b, int64_t seq, char *json, bool count_drops);
static void append_line(struct pk_buffer *b, char kind, int64_t seq, const char *json, size_t len);
static int	compact(struct pk_buffer *b);
static void load(struct pk_buffer *b);
static void remove_upto(struct pk_buffer *b, int64_t seq);
static void load_line(struct pk_buffer *b, char *line, size_t *frames, size_t *bad);

/*
 * Set up an empty buffer bounded by max_frames and max_bytes, then load the
 * persistence file if one is named.  The seq counter starts at the current
 * epoch milliseconds (or after the last persisted seq if that is higher), so
 * a restarted agent without a file never reuses a seq the server has stored.
 */
int
pk_buffer_init(struct pk_buffer *b, size_t max_frames, size_t max_bytes, const char *path)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	b->max_frames = max_frames ? max_frames : 1;
	b->max_bytes = max_bytes;
	b->next_seq = pk_now_ms();
	if (path && *path)
	{
		b->path = strdup(path);
		if (!b->path)
			return -1;
		load(b);
		if (compact(b) != 0)
			pk_log(PK_LOG_WARN, "buffer file %s: %s; buffering in memory only",
				   b->path, strerror(errno));
	}
	return 0;
}

/* The i-th oldest frame, or NULL. */
const struct pk_frame *
pk_buffer_at(const struct pk_buffer *b, size_t i)
{
	if (i >= b->count)
		return NULL;
	return &b->ring[(b->head + i) % b->cap];
}

/* The oldest frame with a seq above seq, or NULL. */
const struct pk_frame *
pk_buffer_after(const struct pk_buffer *b, int64_t seq)
{
	for (size_t i = 0; i < b->count; i++)
	{
		const struct pk_frame *f = pk_buffer_at(b, i);

		if (f->seq > seq)
			return f;
	}
	return NULL;
}

static void
drop_oldest(struct pk_buffer *b)
{
	struct pk_frame *f = &b->ring[b->head];

	b->bytes -= f->len;
	free(f->json);
	f->json = NULL;
	b->head = (b->head + 1) % b->cap;
	b->count--;
}

/* Put a frame at the tail, dropping the oldest while over a bound. */
static int
store(struct pk_buffer *b, int64_t seq, char *json, bool count_drops)
{
	size_t		len = strlen(json);
	int64_t		dropped_upto = -1;

	int64_t		now = pk_mono_ms();

	while (b->count > 0 && (b->count >= b->max_frames ||
							(b->max_bytes && b->bytes + len > b->max_bytes) ||
							(count_drops && b->max_age_ms > 0 &&
							 now - pk_buffer_at(b, 0)->at_ms > b->max_age_ms)))
	{
		dropped_upto = pk_buffer_at(b, 0)->seq;
		drop_oldest(b);
		b->dropped++;
	}
	if (b->count == b->cap)
	{
		size_t		ncap = b->cap ? b->cap * 2 : 16;
		struct pk_frame *nr = malloc(sizeof(*nr) * ncap);

		if (!nr)
			return -1;
		for (size_t i = 0; i < b->count; i++)
			nr[i] = *pk_buffer_at(b, i);
		free(b->ring);
		b->ring = nr;
		b->cap = ncap;
		b->head = 0;
	}
	b->ring[(b->head + b->count) % b->cap] = (struct pk_frame)
	{
		seq, json, len, now
	};
	b->count++;
	b->bytes += len;
	if (seq >= b->next_seq)
		b->next_seq = seq + 1;
	if (dropped_upto >= 0 && count_drops)
	{
		pk_log(PK_LOG_WARN, "resend buffer full: dropped frames up to seq %" PRId64
			   " (%" PRIu64 " dropped so far)", dropped_upto, b->dropped);
		append_line(b, 'X', dropped_upto, NULL, 0);
	}
	return 0;
}

/*
 * Buffer a frame (json is the data object; the buffer takes ownership).
 * Returns 0, or -1 when out of memory (json is freed).
 */
int
pk_buffer_push(struct pk_buffer *b, int64_t seq, char *json)
{
	if (store(b, seq, json, true) != 0)
	{
		free(json);
		return -1;
	}
	append_line(b, 'F', seq, json, strlen(json));
	if (b->fd >= 0 && b->records > 2 * b->count + 64)
		compact(b);
	return 0;
}

static void
remove_upto(struct pk_buffer *b, int64_t seq)
{
	while (b->count > 0 && pk_buffer_at(b, 0)->seq <= seq)
		drop_oldest(b);
}

/* Drop every frame up to seq (an ack); returns how many left. */
size_t
pk_buffer_ack(struct pk_buffer *b, int64_t seq)
{
	size_t		before = b->count;

	if (seq > b->acked)
		b->acked = seq;
	remove_upto(b, seq);
	if (before != b->count)
		append_line(b, 'A', seq, NULL, 0);
	return before - b->count;
}

static void
append_line(struct pk_buffer *b, char kind, int64_t seq, const char *json, size_t len)
{
	char		head[48];
	int			hl;
	struct part
	{
		const void *base;
		size_t		len;
	}			parts[3];
	size_t		total;
	char	   *line;

	if (b->fd < 0)
		return;
	hl = snprintf(head, sizeof(head), "%c %" PRId64 "%s", kind, seq, json ? " " : "\n");
	parts[0] = (struct part)
	{
		head, (size_t) hl
	};
	parts[1] = (struct part)
	{
		json, json ? len : 0
	};
	parts[2] = (struct part)
	{
		"\n", json ? 1 : 0
	};
	total = parts[0].len + parts[1].len + parts[2].len;
	/* One write per line so a crash never interleaves half lines. */
	line = malloc(total);
	if (!line)
		return;
	memcpy(line, parts[0].base, parts[0].len);
	if (parts[1].len)
		memcpy(line + parts[0].len, parts[1].base, parts[1].len);
	if (parts[2].len)
		memcpy(line + parts[0].len + parts[1].len, parts[2].base, parts[2].len);
	if (write(b->fd, line, total) != (ssize_t) total)
	{
		pk_log(PK_LOG_WARN, "buffer file %s: write failed (%s); buffering in memory only",
			   b->path, strerror(errno));
		close(b->fd);
		b->fd = -1;
	}
	else
		b->records++;
	free(line);
}

/* Rewrite the file from memory (atomically) and reopen it for appending. */
static int
compact(struct pk_buffer *b)
{
	size_t		n = strlen(b->path) + 8;
	char	   *tmp = malloc(n);
	int			fd;
	int			saved_fd = b->fd;

	if (!tmp)
	{
		errno = ENOMEM;
		return -1;
	}
	snprintf(tmp, n, "%s.new", b->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
	{
		free(tmp);
		return -1;
	}
	b->fd = fd;
	b->records = 0;
	append_line(b, 'N', b->next_seq, NULL, 0);
	for (size_t i = 0; i < b->count && b->fd >= 0; i++)
	{
		const struct pk_frame *f = pk_buffer_at(b, i);

		append_line(b, 'F', f->seq, f->json, f->len);
	}
	if (b->fd < 0 || rename(tmp, b->path) != 0)
	{
		int			e = errno;

		if (b->fd >= 0)
			close(b->fd);
		unlink(tmp);
		free(tmp);
		b->fd = saved_fd;
		errno = e;
		return -1;
	}
	free(tmp);
	if (saved_fd >= 0)
		close(saved_fd);
	/* b->fd now refers to the renamed file, positioned at its end. */
	return 0;
}

/* Replay one line of the persistence file (NUL-terminated, no newline). */
static void
load_line(struct pk_buffer *b, char *line, size_t *frames, size_t *bad)
{
	char	   *end;
	long long	seq;

	errno = 0;
	seq = line[0] && line[1] == ' ' ? strtoll(line + 2, &end, 10) : -1;
	if (seq < 0 || errno)
		(*bad)++;
	else if (line[0] == 'F' && *end == ' ' && end[1] == '{')
	{
		char	   *json = strdup(end + 1);

		if (json && store(b, seq, json, false) == 0)
			(*frames)++;
		else
			free(json);
	}
	else if (line[0] == 'A' && *end == '\0')
		pk_buffer_ack(b, seq);
	else if (line[0] == 'X' && *end == '\0')
		remove_upto(b, seq);
	else if (line[0] == 'N' && *end == '\0')
	{
		if (seq > b->next_seq)
			b->next_seq = seq;
	}
	else
		(*bad)++;
}

/*
 * Replay the persistence file into memory, a bounded line at a time; a
 * line longer than PK_BUFFER_LINE_MAX is skipped as damaged.
 */
static void
load(struct pk_buffer *b)
{
	int			fd = open(b->path, O_RDONLY | O_CLOEXEC);
	char	   *chunk = NULL,
			   *line = NULL;
	size_t		line_len = 0,
				line_cap = 0,
				frames = 0,
				bad = 0;
	bool		skipping = false;
	uint64_t	dropped_before = b->dropped;

	if (fd < 0)
	{
		if (errno != ENOENT)
			pk_log(PK_LOG_WARN, "cannot read buffer file %s: %s", b->path, strerror(errno));
		return;
	}
	chunk = malloc(PK_BUFFER_READ_CHUNK);
	if (!chunk)
	{
		close(fd);
		pk_log(PK_LOG_WARN, "cannot read buffer file %s: out of memory", b->path);
		return;
	}
	for (;;)
	{
		ssize_t		n = read(fd, chunk, PK_BUFFER_READ_CHUNK);
		char	   *p = chunk,
				   *stop;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			pk_log(PK_LOG_WARN, "cannot read buffer file %s: %s", b->path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		stop = chunk + n;
		while (p < stop)
		{
			char	   *eol = memchr(p, '\n', (size_t) (stop - p));
			size_t		piece = (size_t) ((eol ? eol : stop) - p);

			if (!skipping && line_len + piece + 1 > PK_BUFFER_LINE_MAX)
			{
				skipping = true;	/* too long to be one of ours */
				bad++;
			}
			if (!skipping)
			{
				if (line_len + piece + 1 > line_cap)
				{
					size_t		nc = (line_len + piece + 1) * 2;
					char	   *nb;

					if (nc > PK_BUFFER_LINE_MAX + 1)
						nc = PK_BUFFER_LINE_MAX + 1;
					nb = realloc(line, nc);
					if (!nb)
					{
						skipping = true;
						bad++;
					}
					else
					{
						line = nb;
						line_cap = nc;
					}
				}
				if (!skipping)
				{
					memcpy(line + line_len, p, piece);
					line_len += piece;
				}
			}
			if (!eol)
				break;
			if (!skipping)
			{
				line[line_len] = '\0';
				load_line(b, line, &frames, &bad);
			}
			skipping = false;
			line_len = 0;
			p = eol + 1;
		}
	}
	if (line_len > 0 || skipping)
		bad++;					/* a line cut short by a crash */
	close(fd);
	free(chunk);
	free(line);
	if (bad)
		pk_log(PK_LOG_WARN, "buffer file %s: ignored %zu damaged line(s)", b->path, bad);
	if (b->dropped > dropped_before)
		pk_log(PK_LOG_WARN, "buffer file %s holds more than --buffer-max-bytes allows: "
			   "dropped the %" PRIu64 " oldest frame(s)", b->path, b->dropped - dropped_before);
	pk_log(PK_LOG_INFO, "buffer file %s: %zu unacknowledged frame(s) to re-send",
		   b->path, b->count);
	(void) frames;
}

/* Free everything; the file keeps what was not acknowledged. */
void
pk_buffer_close(struct pk_buffer *b)
{
	if (b->fd >= 0)
	{
		fdatasync(b->fd);
		close(b->fd);
	}
	while (b->count)
		drop_oldest(b);
	free(b->ring);
	free(b->path);
	memset(b, 0, sizeof(*b));
	b->fd = -1;
}
