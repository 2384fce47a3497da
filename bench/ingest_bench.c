/*
 * ingest_bench.c
 *	  Frames per second into one PostgreSQL server, three ways, in one run:
 *
 *	  (a) pankha.ingest() on a seed-style frame of 25 sensors and 5 fans,
 *		  one call per frame (pipelined) and in batches (pankha.ingest_many,
 *		  its arrays sent in binary format);
 *	  (b) COPY of the very same frames already in compact row form;
 *	  (c) a naive PL/pgSQL function that inserts one row per reading;
 *	  (d) COPY of the frames' JSON text as received into a table of
 *		  (agent_id text, frame text), and into one of (agent_id, frame jsonb):
 *		  what storing the raw JSON would cost.
 *
 *	  It prints the ratios (a)/(b), (a)/(c) and (a)/(d), the server
 *	  backend's CPU time per frame of each (read from /proc: run it on the
 *	  database's machine), and the bytes on disk per stored reading, indexes
 *	  included.  Run it through bench/ingest-bench.
 *
 *	  (a') ingest_many again on frames without the sensors' static fields,
 *		  as pankha-agent sends them after the first frame of a connection.
 *
 *	  With PANKHA_PERF=single, batch or sparse (and PANKHA_PERF_OUT=file), that
 *	  phase runs under `perf record -g` attached to the server backend.
 *
 *	  usage: ingest_bench CONNINFO [FRAMES] [AGENTS] [BATCH]
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SENSORS 25
#define FANS 5
#define READINGS_PER_FRAME (SENSORS + FANS)
#define TXN_FRAMES 1000

static PGconn *conn;
static int	backend_pid;
static pid_t perf_pid = 0;

static void
die(const char *what, PGresult *res)
{
	fprintf(stderr, "%s: %s\n", what, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	exit(1);
}

static void
exec_ok(const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		die(sql, res);
	PQclear(res);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) the server backend has used so far. */
static double
backend_cpu_s(void)
{
	char		path[64];
	char		buf[1024];
	FILE	   *f;
	char	   *p;
	unsigned long long utime,
				stime;
	size_t		n;

	snprintf(path, sizeof(path), "/proc/%d/stat", backend_pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the command name in parentheses: state is 3, utime 14, stime 15 */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
							&utime, &stime) != 2)
		return -1;
	return (double) (utime + stime) / sysconf(_SC_CLK_TCK);
}

/* Start perf on the backend when PANKHA_PERF names this phase. */
static void
perf_start(const char *phase)
{
	const char *want = getenv("PANKHA_PERF");
	const char *out = getenv("PANKHA_PERF_OUT");
	char		pid[16];

	if (want == NULL || strcmp(want, phase) != 0)
		return;
	snprintf(pid, sizeof(pid), "%d", backend_pid);
	perf_pid = fork();
	if (perf_pid == 0)
	{
		execlp("perf", "perf", "record", "-q", "-g", "-p", pid, "-o",
			   out ? out : "perf.data", (char *) NULL);
		_exit(127);
	}
	sleep(1);					/* let it attach */
}

static void
perf_stop(void)
{
	if (perf_pid > 0)
	{
		kill(perf_pid, SIGINT);
		waitpid(perf_pid, NULL, 0);
		perf_pid = 0;
	}
}

static long long
query_ll(const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	long long	v;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die(sql, res);
	v = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/*
 * The JSON text of frame i: agent i % agents, 3 s apart per agent.  With
 * meta false, its sensors leave out their static fields (type, max_temp,
 * crit_temp), as pankha-agent's frames after the first of a connection do.
 */
static char *
make_frame(long i, int agents, long long base_ms, char *agent_out, size_t agent_len, bool meta)
{
	char	   *buf = malloc(8192);
	size_t		off = 0;
	long long	ts = base_ms + (i / agents) * 3000;

	if (buf == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	snprintf(agent_out, agent_len, "bench-%04ld", i % agents);
	off += snprintf(buf + off, 8192 - off,
					"{\"agentId\":\"%s\",\"timestamp\":%lld,\"seq\":%ld,\"sensors\":[",
					agent_out, ts, i / agents);
	for (int s = 0; s < SENSORS; s++)
		off += snprintf(buf + off, 8192 - off,
						"%s{\"id\":\"temp_%02d\",\"temperature\":%.1f%s}",
						s ? "," : "", s, 35.0 + (s * 7 + i) % 400 / 10.0,
						meta ? ",\"type\":\"cpu\",\"max_temp\":85,\"crit_temp\":95" : "");
	off += snprintf(buf + off, 8192 - off, "],\"fans\":[");
	for (int f = 0; f < FANS; f++)
		off += snprintf(buf + off, 8192 - off,
						"%s{\"id\":\"fan_%d\",\"speed\":%d,\"rpm\":%ld,\"targetSpeed\":%d,\"status\":\"ok\"}",
						f ? "," : "", f, 40 + f * 10, 900 + (i * 13 + f * 100) % 1500, 40 + f * 10);
	snprintf(buf + off, 8192 - off,
			 "],\"systemHealth\":{\"cpuUsage\":%.1f,\"memoryUsage\":45.2,\"agentUptime\":%ld}}",
			 (i % 1000) / 10.0, 3600 + i);
	return buf;
}

/* Send frames [from, to) one call each, pipelined, committing every TXN_FRAMES. */
static void
run_single(const char *stmt, char **frames, char (*agents)[32], long from, long to)
{
	for (long t = from; t < to; t += TXN_FRAMES)
	{
		long		end = t + TXN_FRAMES < to ? t + TXN_FRAMES : to;
		PGresult   *res;

		if (!PQenterPipelineMode(conn))
			die("pipeline", NULL);
		PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
		for (long i = t; i < end; i++)
		{
			const char *params[2] = {agents[i], frames[i]};

			if (!PQsendQueryPrepared(conn, stmt, 2, params, NULL, NULL, 0))
				die("send", NULL);
		}
		PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
		PQpipelineSync(conn);
		for (;;)
		{
			res = PQgetResult(conn);
			if (res == NULL)
				continue;
			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				PQclear(res);
				break;
			}
			if (PQresultStatus(res) == PGRES_FATAL_ERROR)
				die("pipelined call", res);
			PQclear(res);
		}
		/* the last NULL after the sync leaves the connection idle */
		while (!PQexitPipelineMode(conn))
		{
			res = PQgetResult(conn);
			if (res)
			{
				if (PQresultStatus(res) == PGRES_FATAL_ERROR)
					die("pipelined call", res);
				PQclear(res);
			}
		}
	}
}

/*
 * A text[] in PostgreSQL's binary array format: no quoting or escaping of
 * the JSON on either side.  Sets *len.
 */
static char *
binary_text_array(char **items, long n, int *len)
{
	size_t		cap = 20;
	char	   *out;
	char	   *p;

	for (long i = 0; i < n; i++)
		cap += 4 + strlen(items[i]);
	out = malloc(cap);
	if (out == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	p = out;
#define PUT32(v) do { uint32_t x_ = htonl((uint32_t) (v)); memcpy(p, &x_, 4); p += 4; } while (0)
	PUT32(1);					/* dimensions */
	PUT32(0);					/* no nulls */
	PUT32(25);					/* element type: text */
	PUT32(n);					/* length */
	PUT32(1);					/* lower bound */
	for (long i = 0; i < n; i++)
	{
		size_t		l = strlen(items[i]);

		PUT32(l);
		memcpy(p, items[i], l);
		p += l;
	}
#undef PUT32
	*len = (int) (p - out);
	return out;
}

/* Frames [from, to) through pankha.ingest_many in calls of batch frames. */
static void
run_batches(char **frames, char (*agents)[32], long from, long to, int batch)
{
	char	  **agent_ptrs = malloc(sizeof(char *) * batch);

	for (long t = from; t < to; t += batch)
	{
		long		n = t + batch < to ? batch : to - t;
		char	   *a;
		char	   *f;
		const char *params[2];
		PGresult   *res;

		int			lengths[2];
		int			formats[2] = {1, 1};

		for (long i = 0; i < n; i++)
			agent_ptrs[i] = agents[t + i];
		a = binary_text_array(agent_ptrs, n, &lengths[0]);
		f = binary_text_array(frames + t, n, &lengths[1]);
		params[0] = a;
		params[1] = f;
		res = PQexecPrepared(conn, "many", 2, params, lengths, formats, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("ingest_many", res);
		for (int r = 0; r < PQntuples(res); r++)
			if (!PQgetisnull(res, r, 2))
				die(PQgetvalue(res, r, 3), NULL);
		PQclear(res);
		free(a);
		free(f);
	}
	free(agent_ptrs);
}

/* COPY buf into table (with its columns); returns the seconds it took. */
static double
copy_in(const char *copy_sql, const char *buf, size_t len)
{
	double		t0 = now_s();
	PGresult   *res = PQexec(conn, copy_sql);

	if (PQresultStatus(res) != PGRES_COPY_IN)
		die("copy in", res);
	PQclear(res);
	for (size_t off = 0; off < len; off += 65536)
		if (PQputCopyData(conn, buf + off, (int) (len - off < 65536 ? len - off : 65536)) != 1)
			die("copy data", NULL);
	PQputCopyEnd(conn, NULL);
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("copy", res);
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return now_s() - t0;
}

/*
 * The frames as COPY text rows (agent_id TAB frame): backslashes in the
 * JSON are doubled, as COPY's text format wants.
 */
static char *
raw_copy_rows(char **frames, char (*agents)[32], long n, size_t *len)
{
	size_t		cap = 0;
	char	   *out;
	char	   *p;

	for (long i = 0; i < n; i++)
		cap += strlen(agents[i]) + 2 * strlen(frames[i]) + 2;
	out = malloc(cap + 1);
	if (out == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	p = out;
	for (long i = 0; i < n; i++)
	{
		p += sprintf(p, "%s\t", agents[i]);
		for (const char *c = frames[i]; *c; c++)
		{
			if (*c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '\n';
	}
	*len = p - out;
	return out;
}

int
main(int argc, char **argv)
{
	long		nframes = argc > 2 ? atol(argv[2]) : 100000;
	int			nagents = argc > 3 ? atoi(argv[3]) : 100;
	int			batch = argc > 4 ? atoi(argv[4]) : 500;
	char	  **frames;
	char		(*agents)[32];
	long long	base_ms;
	double		t0,
				c0,
				single_s,
				batch_s,
				copy_s,
				naive_s,
				text_s,
				jsonb_s,
				sparse_s,
				sparse_cpu,
				single_cpu,
				batch_cpu,
				copy_cpu,
				naive_cpu,
				text_cpu,
				jsonb_cpu;
	char	   *raw_rows;
	size_t		raw_len;
	char	  **sparse;
	size_t		sparse_bytes = 0;
	long		half;
	long long	table_bytes,
				naive_bytes,
				stored;
	PGresult   *res;
	char	   *copy_data = NULL;
	size_t		copy_len = 0;
	size_t		copy_cap = 0;
	char	   *row;
	int			rowlen;
	long		naive_frames;

	if (argc < 2)
	{
		fprintf(stderr, "usage: %s CONNINFO [FRAMES] [AGENTS] [BATCH]\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connect", NULL);
	PQclear(PQexec(conn, "SET client_min_messages = warning"));
	backend_pid = PQbackendPID(conn);

	base_ms = query_ll("SELECT (extract(epoch FROM now() - interval '3 days') * 1000)::bigint");
	frames = malloc(sizeof(char *) * nframes);
	agents = malloc(sizeof(*agents) * nframes);
	if (!frames || !agents)
		die("malloc", NULL);
	for (long i = 0; i < nframes; i++)
		frames[i] = make_frame(i, nagents, base_ms, agents[i], sizeof(agents[i]), true);

	{
		char		sql[256];

		snprintf(sql, sizeof(sql),
				 "SELECT count(pankha.register_agent(format('bench-%%s', lpad(i::text, 4, '0')), 'bench')) "
				 "FROM generate_series(0, %d) i", nagents - 1);
		exec_ok(sql);
	}
	exec_ok("CREATE TABLE naive_readings (agent_id text NOT NULL, ts timestamptz NOT NULL, "
			"kind text NOT NULL, id text NOT NULL, value double precision, "
			"PRIMARY KEY (agent_id, ts, kind, id))");
	exec_ok("CREATE FUNCTION naive_ingest(p_agent text, p_frame jsonb) RETURNS void "
			"LANGUAGE plpgsql AS $$ DECLARE s jsonb; ts timestamptz := "
			"to_timestamp((p_frame->>'timestamp')::double precision / 1000); BEGIN "
			"FOR s IN SELECT * FROM jsonb_array_elements(p_frame->'sensors') LOOP "
			"INSERT INTO naive_readings VALUES (p_agent, ts, 'temp', s->>'id', (s->>'temperature')::float8) "
			"ON CONFLICT DO NOTHING; END LOOP; "
			"FOR s IN SELECT * FROM jsonb_array_elements(p_frame->'fans') LOOP "
			"INSERT INTO naive_readings VALUES (p_agent, ts, 'rpm', s->>'id', (s->>'rpm')::float8) "
			"ON CONFLICT DO NOTHING; END LOOP; END $$");

	res = PQprepare(conn, "single", "SELECT pankha.ingest($1, $2::text)", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare", res);
	PQclear(res);
	res = PQprepare(conn, "many", "SELECT * FROM pankha.ingest_many($1::text[], $2::text[])", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare", res);
	PQclear(res);
	res = PQprepare(conn, "naive", "SELECT naive_ingest($1, $2::jsonb)", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare", res);
	PQclear(res);

	/* warm up: partitions and catalog exist before anything is timed */
	exec_ok("SELECT pankha.ensure_partitions(now() - interval '4 days', now() + interval '1 day')");
	run_single("single", frames, agents, 0, nagents);
	exec_ok("DELETE FROM pankha.readings");

	half = nframes / 2;
	perf_start("single");
	c0 = backend_cpu_s();
	t0 = now_s();
	run_single("single", frames, agents, 0, half);
	single_s = now_s() - t0;
	single_cpu = backend_cpu_s() - c0;
	perf_stop();

	perf_start("batch");
	c0 = backend_cpu_s();
	t0 = now_s();
	run_batches(frames, agents, half, nframes, batch);
	batch_s = now_s() - t0;
	batch_cpu = backend_cpu_s() - c0;
	perf_stop();

	stored = query_ll("SELECT count(*) FROM pankha.readings");
	if (stored != nframes)
	{
		fprintf(stderr, "stored %lld frames of %ld sent\n", stored, nframes);
		return 1;
	}
	exec_ok("VACUUM ANALYZE pankha.readings");
	table_bytes = query_ll("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
						   "WHERE inhparent = 'pankha.readings'::regclass");

	/* (b): the same rows, already compact, through COPY */
	res = PQexec(conn, "COPY (SELECT agent_id, ts, received_at, agent_ts, payload "
				 "FROM pankha.readings) TO STDOUT");
	if (PQresultStatus(res) != PGRES_COPY_OUT)
		die("copy out", res);
	PQclear(res);
	while ((rowlen = PQgetCopyData(conn, &row, 0)) > 0)
	{
		if (copy_len + rowlen > copy_cap)
		{
			copy_cap = (copy_cap + rowlen) * 2;
			copy_data = realloc(copy_data, copy_cap);
			if (!copy_data)
				die("realloc", NULL);
		}
		memcpy(copy_data + copy_len, row, rowlen);
		copy_len += rowlen;
		PQfreemem(row);
	}
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	exec_ok("TRUNCATE pankha.readings");

	c0 = backend_cpu_s();
	copy_s = copy_in("COPY pankha.readings (agent_id, ts, received_at, agent_ts, payload) FROM STDIN",
					 copy_data, copy_len);
	copy_cpu = backend_cpu_s() - c0;

	/* (d): the JSON as received, into text and jsonb tables */
	exec_ok("CREATE TABLE raw_text (agent_id text NOT NULL, frame text NOT NULL)");
	exec_ok("CREATE TABLE raw_jsonb (agent_id text NOT NULL, frame jsonb NOT NULL)");
	raw_rows = raw_copy_rows(frames, agents, nframes, &raw_len);
	c0 = backend_cpu_s();
	text_s = copy_in("COPY raw_text FROM STDIN", raw_rows, raw_len);
	text_cpu = backend_cpu_s() - c0;
	c0 = backend_cpu_s();
	jsonb_s = copy_in("COPY raw_jsonb FROM STDIN", raw_rows, raw_len);
	jsonb_cpu = backend_cpu_s() - c0;
	free(raw_rows);

	/*
	 * (a'): ingest_many again, on the second half's frames as pankha-agent
	 * sends them after the first of a connection: without the sensors'
	 * static fields, which the catalog has.  What smaller frames save.
	 */
	sparse = malloc(sizeof(char *) * nframes);
	if (!sparse)
		die("malloc", NULL);
	for (long i = 0; i < nframes; i++)
	{
		char		agent[32];

		sparse[i] = make_frame(i, nagents, base_ms, agent, sizeof(agent), i < nagents);
		if (i >= half)
			sparse_bytes += strlen(sparse[i]);
	}
	exec_ok("TRUNCATE pankha.readings");
	perf_start("sparse");
	c0 = backend_cpu_s();
	t0 = now_s();
	run_batches(sparse, agents, half, nframes, batch);
	sparse_s = now_s() - t0;
	sparse_cpu = backend_cpu_s() - c0;
	perf_stop();
	if (query_ll("SELECT count(*) FROM pankha.readings") != nframes - half)
	{
		fprintf(stderr, "stored %lld frames of %ld sent\n",
				query_ll("SELECT count(*) FROM pankha.readings"), nframes - half);
		return 1;
	}

	/* (c): naive, on a tenth of the frames (it is slow) */
	naive_frames = nframes / 10;
	c0 = backend_cpu_s();
	t0 = now_s();
	run_single("naive", frames, agents, 0, naive_frames);
	naive_s = now_s() - t0;
	naive_cpu = backend_cpu_s() - c0;
	exec_ok("VACUUM ANALYZE naive_readings");
	naive_bytes = query_ll("SELECT pg_total_relation_size('naive_readings')");

	{
		double		single_fps = half / single_s;
		double		batch_fps = (nframes - half) / batch_s;
		double		copy_fps = nframes / copy_s;
		double		naive_fps = naive_frames / naive_s;
		double		text_fps = nframes / text_s;
		double		jsonb_fps = nframes / jsonb_s;
		double		per_reading = (double) table_bytes / ((double) nframes * READINGS_PER_FRAME);
		size_t		json_bytes = 0;

		for (long i = 0; i < nframes; i++)
			json_bytes += strlen(frames[i]);
#define US(cpu, n) ((cpu) < 0 ? -1.0 : (cpu) * 1e6 / (double) (n))
		printf("frames: %ld (%d agents, %d sensors + %d fans + 3 health values each, %.0f bytes of JSON)\n",
			   nframes, nagents, SENSORS, FANS, (double) json_bytes / nframes);
		printf("                                          frames/s   server CPU us/frame\n");
		printf("(a) pankha.ingest, one call per frame:   %10.0f   %8.1f\n", single_fps, US(single_cpu, half));
		printf("(a) pankha.ingest_many, %4d per call:    %10.0f   %8.1f\n", batch, batch_fps,
			   US(batch_cpu, nframes - half));
		printf("(a') ingest_many, frames as the agent sends them (%.0f bytes, no static fields):\n"
			   "                                          %10.0f   %8.1f\n",
			   (double) sparse_bytes / (nframes - half), (nframes - half) / sparse_s,
			   US(sparse_cpu, nframes - half));
		printf("(b) COPY of the compact rows:            %10.0f   %8.1f\n", copy_fps, US(copy_cpu, nframes));
		printf("(c) naive PL/pgSQL, row per reading:     %10.0f   %8.1f\n", naive_fps,
			   US(naive_cpu, naive_frames));
		printf("(d) COPY of the raw JSON into text:      %10.0f   %8.1f\n", text_fps, US(text_cpu, nframes));
		printf("(d) COPY of the raw JSON into jsonb:     %10.0f   %8.1f\n", jsonb_fps, US(jsonb_cpu, nframes));
#undef US
		printf("ratio (a)/(b): single %.2f, batch %.2f   (target >= 0.5)\n",
			   single_fps / copy_fps, batch_fps / copy_fps);
		printf("ratio (a)/(c): single %.1f, batch %.1f   (target >= 10)\n",
			   single_fps / naive_fps, batch_fps / naive_fps);
		printf("ratio (a)/(d) text: single %.2f, batch %.2f   (target > 1); jsonb: batch %.2f\n",
			   single_fps / text_fps, batch_fps / text_fps, batch_fps / jsonb_fps);
		printf("batch / single: %.2f   (target > 1)\n", batch_fps / single_fps);
		printf("bytes on disk per reading (heap + indexes, %d readings a frame): %.2f   (target <= 8)\n",
			   READINGS_PER_FRAME, per_reading);
		printf("bytes on disk per frame: %.1f; naive table: %.1f bytes per reading\n",
			   (double) table_bytes / nframes,
			   (double) naive_bytes / ((double) naive_frames * READINGS_PER_FRAME));
	}
	PQfinish(conn);
	return 0;
}
