# Compressed cold storage (issue 16), on a real server:
#  - equivalence, property-tested over several random seeds: every reader
#    of frames (the reading views, pankha.latest, pankha.frames, history at
#    every resolution, agent reports, the rollups) answers the same before
#    and after the frames are compressed, with sensors appearing and
#    disappearing, fans without speeds, unknown status words, health values
#    left out, frames re-sent and late frames for compressed hours;
#  - crash safety: the backend running the compression is killed (SIGKILL,
#    so the server goes through crash recovery) in the middle of its pass;
#    afterwards every frame is there exactly once, and the pass finishes;
#  - the worker compresses past days by itself, late frames included;
#  - archive-before-drop writes a compressed day whole, and retention drops
#    its compressed frames with it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $archive = PostgreSQL::Test::Utils::tempdir();
my $node = PostgreSQL::Test::Cluster->new('cold');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pankha'
pankha.database = 'worker'
pankha.naptime = 1
pankha.worker_enabled = off
restart_after_crash = on
});
$node->start;

# Random frames for agents <prefix>1..<n>: a random walk of temperatures,
# sensors and fans present at random, at random intervals, starting at
# different hours of the day before yesterday (some run into yesterday).
sub generate
{
	my ($db, $seed, $prefix, $agents, $frames) = @_;
	$node->safe_psql($db, qq{
SELECT setseed($seed);
SELECT count(pankha.register_agent('$prefix' || a, 'Agent ' || a)) FROM generate_series(1, $agents) a;
CREATE TABLE IF NOT EXISTS gen (agent_id text, i int, frame jsonb);
WITH base AS (
    SELECT a, i, random() AS r1, random() AS r2, random() AS r3,
           3000 + (random() * 12000)::int AS step
    FROM generate_series(1, $agents) a, generate_series(0, $frames - 1) i
), timed AS (
    SELECT b.*, (extract(epoch FROM (date_trunc('day', now() AT TIME ZONE 'UTC') - interval '2 days') AT TIME ZONE 'UTC') * 1000)::bigint
                + (b.a % 8) * 5 * 3600000 + sum(step) OVER (PARTITION BY a ORDER BY i) AS ts_ms
    FROM base b
), sens AS (
    SELECT t.a, t.i, s, random() < 0.6 + 0.4 * ((s * 7 + $seed * 100)::int % 5) / 4.0 AS present,
           round((35 + s * 3 + sum(random() - 0.5) OVER (PARTITION BY t.a, s ORDER BY t.i))::numeric, 2) AS temp
    FROM timed t, generate_series(1, 8) s
), sensor_lists AS (
    SELECT x.a, x.i, jsonb_agg(jsonb_build_object('id', 's' || x.s, 'temperature', x.temp) ORDER BY x.s) AS list
    FROM sens x WHERE x.present GROUP BY x.a, x.i
)
INSERT INTO gen
SELECT '$prefix' || t.a, t.i, jsonb_strip_nulls(jsonb_build_object(
    'timestamp', t.ts_ms,
    'seq', CASE WHEN t.r1 > 0.05 THEN t.i END,
    'sensors', coalesce(l.list, '[]'),
    'fans', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('id', 'f' || f,
                 'rpm', CASE WHEN t.r2 < 0.02 THEN 0 ELSE 900 + f * 150 + (t.i % 40) * 5 END,
                 'speed', CASE WHEN random() < 0.2 THEN NULL ELSE 30 + (t.i % 30) END,
                 'targetSpeed', CASE WHEN random() < 0.5 THEN 45 END,
                 'status', (ARRAY['ok', 'auto', 'stalled', 'spinning-up', NULL])[1 + (random() * 4.4)::int])))
             FROM generate_series(1, 1 + t.a % 3) f WHERE random() < 0.9),
    'systemHealth', jsonb_build_object(
        'cpuUsage', CASE WHEN t.r1 < 0.9 THEN round((100 * t.r2)::numeric, 1) END,
        'memoryUsage', CASE WHEN t.r3 < 0.7 THEN round((40 + 10 * t.r3)::numeric, 1) END,
        'agentUptime', 100 + t.i * 9,
        'netTxBytesPerSec', CASE WHEN t.r3 > 0.5 THEN round((1e6 * t.r1)::numeric) END)))
FROM timed t LEFT JOIN sensor_lists l ON l.a = t.a AND l.i = t.i;
SELECT sum(pankha.ingest_batch(g.agent_id, g.frames))
  FROM (SELECT agent_id, jsonb_agg(frame ORDER BY i) AS frames FROM gen
         WHERE agent_id LIKE '$prefix%' GROUP BY agent_id) g;
});
}

# Everything the readers of frames answer, one jsonb per row.
my $readers = q{
CREATE VIEW readers AS
WITH day0 AS (SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') - interval '2 days') AT TIME ZONE 'UTC' AS d),
series AS (
    SELECT s.agent_id, s.sensor_id AS series FROM pankha.sensors s
    UNION ALL SELECT f.agent_id, f.fan_id FROM pankha.fans f
    UNION ALL SELECT a.agent_id, m.metric FROM pankha.agents a, pankha.health_metrics() m)
SELECT 'sensor_readings' AS reader, to_jsonb(x) AS row FROM pankha.sensor_readings x
UNION ALL SELECT 'fan_readings', to_jsonb(x) FROM pankha.fan_readings x
UNION ALL SELECT 'health_readings', to_jsonb(x) FROM pankha.health_readings x
UNION ALL SELECT 'latest', to_jsonb(x) FROM pankha.latest x
UNION ALL SELECT 'frames', to_jsonb(x) FROM pankha.frames x
UNION ALL SELECT 'history ' || coalesce(res::text, 'auto') || ' ' || w::text,
                 to_jsonb(h) || jsonb_build_object('agent', s.agent_id, 'series', s.series)
  FROM day0, series s,
       unnest(ARRAY[NULL, '30 seconds', '1 minute', '10 minutes', '1 hour', '1 day']::interval[]) res,
       generate_series(0, 40, 8) w,
       LATERAL pankha.history(s.agent_id, s.series, day0.d + w * interval '1 hour',
                              day0.d + w * interval '1 hour' + interval '90 minutes', res) h
UNION ALL SELECT 'history 2 days', to_jsonb(h) || jsonb_build_object('agent', s.agent_id, 'series', s.series)
  FROM day0, series s, LATERAL pankha.history(s.agent_id, s.series, day0.d, day0.d + interval '2 days') h
UNION ALL SELECT 'agent_report', to_jsonb(r) - 'status'
  FROM day0, pankha.agents a, LATERAL pankha.agent_report(a.agent_id, day0.d, day0.d + interval '1 day') r
UNION ALL SELECT 'rollup_1m', to_jsonb(m) FROM pankha.rollup_1m m
UNION ALL SELECT 'rollup_1h', to_jsonb(m) FROM pankha.rollup_1h m;
CREATE TABLE answers (reader text, row jsonb);
CREATE FUNCTION differences() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(reader || ' ' || n, ', ' ORDER BY reader), 'none') FROM (
        SELECT reader, count(*) AS n FROM (
            (SELECT * FROM answers EXCEPT ALL SELECT * FROM readers)
            UNION ALL (SELECT * FROM readers EXCEPT ALL SELECT * FROM answers)) d GROUP BY 1) x
$$;
CREATE FUNCTION compress_all() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint; total bigint := 0;
BEGIN
    LOOP
        n := pankha.compress_before(date_trunc('day', now()), 3);
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;
};

sub rollup
{
	my ($db) = @_;
	$node->safe_psql($db, 'SELECT pg_sleep(1.1); SELECT pankha.rollup(true)');
}

# ---------------------------------------------------------------------
# Equivalence over random frames.
# ---------------------------------------------------------------------
# (COLD_SEEDS picks others, e.g. to look into a failure)
for my $seed (split ' ', $ENV{COLD_SEEDS} // '0.11 0.37 0.83')
{
	my $db = 'prop' . int($seed * 100);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION pankha');
	$node->safe_psql($db, $readers);
	my $stored = (split /\n/, generate($db, $seed, 'p', 4, 500))[-1];
	cmp_ok($stored, '>', 1900, "seed $seed: $stored frames stored");
	# re-sent frames change nothing
	$node->safe_psql($db, q{SELECT sum(pankha.ingest_batch(g.agent_id, g.frames))
	  FROM (SELECT agent_id, jsonb_agg(frame ORDER BY i) AS frames FROM gen WHERE i % 7 = 0 GROUP BY agent_id) g});
	rollup($db);
	$node->safe_psql($db, 'INSERT INTO answers SELECT * FROM readers');
	my $moved = $node->safe_psql($db, 'SELECT compress_all()');
	is($moved, $stored, "seed $seed: every frame of the past days is compressed");
	is($node->safe_psql($db, 'SELECT differences()'), 'none',
		"seed $seed: every reader answers the same on compressed frames");

	# frames sent again after compression are not stored again
	$node->safe_psql($db, q{SELECT sum(pankha.ingest_batch(g.agent_id, g.frames))
	  FROM (SELECT agent_id, jsonb_agg(frame ORDER BY i) AS frames FROM gen WHERE i % 5 = 0 GROUP BY agent_id) g});
	is($node->safe_psql($db, 'SELECT count(*) FROM pankha.readings'), '0',
		"seed $seed: frames sent again are not stored twice");
	is($node->safe_psql($db, 'SELECT differences()'), 'none', "seed $seed: and change no answer");

	# late frames, half a step after random compressed frames
	my $late = $node->safe_psql($db, q{
	SELECT sum(pankha.ingest_batch(g.agent_id, g.frames)) FROM (
	    SELECT agent_id, jsonb_agg(jsonb_set(frame, '{timestamp}', to_jsonb((frame->>'timestamp')::bigint + 1501)) ORDER BY i) AS frames
	      FROM gen WHERE random() < 0.05 GROUP BY agent_id) g});
	cmp_ok($late, '>', 0, "seed $seed: $late late frames stored");
	is($node->safe_psql($db, 'SELECT count(*) FROM pankha.readings'), $late, "seed $seed: raw, for now");
	rollup($db);
	$node->safe_psql($db, 'TRUNCATE answers; INSERT INTO answers SELECT * FROM readers');
	is($node->safe_psql($db, q{SELECT count(*) FROM answers WHERE reader = 'frames'}), $stored + $late,
		"seed $seed: late frames are visible next to the compressed ones");
	is($node->safe_psql($db, 'SELECT compress_all()'), $late, "seed $seed: a later pass folds them in");
	is($node->safe_psql($db, 'SELECT count(*) FROM pankha.readings'), '0', "seed $seed: leaving no raw frame");
	is($node->safe_psql($db, 'SELECT differences()'), 'none', "seed $seed: with the same answers");

	# a rebuild of the rollups from compressed frames
	$node->safe_psql($db, 'DELETE FROM pankha.rollup_1m; DELETE FROM pankha.rollup_1h');
	is($node->safe_psql($db, 'SELECT pankha.rollup_rebuild()'), $stored + $late,
		"seed $seed: a rollup rebuild reads every compressed frame");
	is($node->safe_psql($db, 'SELECT differences()'), 'none', "seed $seed: and gives the same rollups");
}

# ---------------------------------------------------------------------
# Crash safety: kill the backend in the middle of the compression.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE crash');
$node->safe_psql('crash', 'CREATE EXTENSION pankha');
# 40 agents make some 40 steps (one agent and day each), so the kill lands
# with most of them still to do; 500 frames an agent are enough for that
# (1,500 took three times as long to make and proved nothing more)
my $stored = (split /\n/, generate('crash', 0.5, 'k', 40, 500))[-1];
rollup('crash');
my $digest = q{SELECT count(*), count(DISTINCT (agent_id, ts)),
	md5(string_agg(agent_id || ts || received_at || payload::text, ',' ORDER BY agent_id, ts)) FROM pankha.frames};
my $before = $node->safe_psql('crash', $digest);
like($before, qr/^$stored\|$stored\|/, "crash: $stored frames before compression");

# each step sleeps after its work, before it commits: a kill then lands
# in a transaction that has moved frames
my $script = join('', map { "SELECT pankha.compress_before(date_trunc('day', now()), 1), pg_sleep(0.3);\n" } 1 .. 60);
my $script_file = PostgreSQL::Test::Utils::tempdir() . '/steps.sql';
open(my $sf, '>', $script_file) or die "cannot write $script_file: $!";
print $sf $script;
close($sf);
my ($out, $err) = ('', '');
my $h = IPC::Run::start(['psql', '-X', '-d', $node->connstr('crash'), '-f', $script_file],
	'<', \undef, '>', \$out, '2>', \$err);
ok($node->poll_query_until('crash', q{SELECT count(*) >= 3 FROM pankha.frames_cold}),
	'crash: the pass has committed some steps');
my $pid = $node->safe_psql('crash', q{
	SELECT pid FROM pg_stat_activity WHERE query LIKE '%compress_before%' AND state = 'active'
	   AND pid <> pg_backend_pid()});
like($pid, qr/^\d+$/, 'crash: the backend is in the middle of a step');
kill 'KILL', $pid;
$h->finish;
ok($node->poll_query_until('crash', 'SELECT 1', '1'), 'crash: the server is back after crash recovery');
like(slurp_file($node->logfile), qr/server process \(PID $pid\) was terminated by signal 9/,
	'crash: the server went through crash recovery');
my $partial = $node->safe_psql('crash', 'SELECT count(*) FROM pankha.readings');
cmp_ok($partial, '>', 0, "crash: the pass was cut short ($partial frames still raw)");
is($node->safe_psql('crash', $digest), $before, 'crash: every frame is there, once, unchanged');
$node->safe_psql('crash', $readers);
is($node->safe_psql('crash', 'SELECT compress_all()'), $partial, 'crash: the pass is done again');
is($node->safe_psql('crash', $digest), $before, 'crash: still every frame once');
is($node->safe_psql('crash', 'SELECT count(*) FROM pankha.readings'), '0', 'crash: nothing left raw');

# ---------------------------------------------------------------------
# The worker compresses by itself, late frames included.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE worker');
$node->safe_psql('worker', 'CREATE EXTENSION pankha');
my $wstored = (split /\n/, generate('worker', 0.7, 'w', 3, 300))[-1];
$node->safe_psql('worker', $readers);
rollup('worker');
$node->safe_psql('worker', 'INSERT INTO answers SELECT * FROM readers');
$node->append_conf('postgresql.conf', "pankha.worker_enabled = on\n");
$node->reload;
ok($node->poll_query_until('worker', q{SELECT count(*) = 0 FROM pankha.readings}),
	'worker: it compresses the frames of past days');
is($node->safe_psql('worker', 'SELECT sum(frames) FROM pankha.frames_cold'), $wstored, 'worker: every one');
is($node->safe_psql('worker', 'SELECT differences()'), 'none', 'worker: with the same answers');
my $wlate = $node->safe_psql('worker', q{
	SELECT sum(pankha.ingest_batch(g.agent_id, g.frames)) FROM (
	    SELECT agent_id, jsonb_agg(jsonb_set(frame, '{timestamp}', to_jsonb((frame->>'timestamp')::bigint + 777)) ORDER BY i) AS frames
	      FROM gen WHERE i % 50 = 1 GROUP BY agent_id) g});
ok($node->poll_query_until('worker', q{SELECT count(*) = 0 FROM pankha.readings}),
	"worker: it folds in $wlate late frames");
is($node->safe_psql('worker', 'SELECT sum(frames) FROM pankha.frames_cold'), $wstored + $wlate,
	'worker: all of them');
$node->append_conf('postgresql.conf', "pankha.worker_enabled = off\n");
$node->reload;

# ---------------------------------------------------------------------
# Archive-before-drop and retention of a compressed day.
# ---------------------------------------------------------------------
my $day = $node->safe_psql('crash', q{SELECT to_char(now() AT TIME ZONE 'UTC' - interval '2 days', 'YYYYMMDD')});
my $expected = "$archive/expected.csv";
$node->safe_psql('crash', qq{
	COPY (SELECT ts, received_at, agent_id, payload, agent_ts FROM pankha.frames
	       WHERE ts >= (SELECT range_start FROM pankha.time_partitions WHERE partition = 'pankha.readings_$day'::regclass)
	         AND ts < (SELECT range_end FROM pankha.time_partitions WHERE partition = 'pankha.readings_$day'::regclass))
	TO '$expected' WITH (FORMAT csv, HEADER)});
my $day_frames = $node->safe_psql('crash', qq{SELECT count(*) FROM pankha.frames_cold c, pankha.cold_frames(c.packed) u
	WHERE c.hour >= (SELECT range_start FROM pankha.time_partitions WHERE partition = 'pankha.readings_$day'::regclass)
	  AND c.hour < (SELECT range_end FROM pankha.time_partitions WHERE partition = 'pankha.readings_$day'::regclass)});
cmp_ok($day_frames, '>', 0, "retention: the day $day has $day_frames compressed frames");
$node->append_conf('postgresql.conf', "pankha.raw_retention = '1d'\npankha.archive_directory = '$archive'\n");
$node->reload;
like($node->safe_psql('crash', 'SELECT string_agg(partition, \' \') FROM pankha.drop_expired_partitions()'),
	qr/pankha\.readings_$day/, 'retention: the compressed day is dropped');
my @archived = sort split /\n/, `gzip -dc "$archive/readings_$day.csv.gz"`;
my @want = sort split /\n/, slurp_file($expected);
is(scalar(@archived), $day_frames + 1, 'retention: its archive has every compressed frame and the header');
is_deeply(\@archived, \@want, 'retention: as pankha.frames had them');
is($node->safe_psql('crash', qq{SELECT count(*) FROM pankha.frames_cold
	WHERE hour < (SELECT min(range_start) FROM pankha.time_partitions WHERE parent = 'readings')}),
	'0', 'retention: the compressed frames of the day are dropped with it');

$node->stop('fast');
done_testing();
