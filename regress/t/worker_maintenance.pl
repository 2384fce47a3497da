# The pankha background worker, running for real with a short naptime:
# partitions ahead and past retention (archived first), rollups that match
# the raw data also after late frames, agents going offline and back,
# commands expiring and being redelivered, alerts firing once, honouring
# their cooldown and resolving, with the NOTIFY each sends; SIGHUP,
# SIGTERM, restart, and the extension dropped under the worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use Time::HiRes ();

# Wait for a log line like wait_for_log, but return false on a timeout
# instead of dying, so a missing line is one failed check (audit 14).
sub log_appears
{
	my ($node, $re, $offset) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if slurp_file($node->logfile, $offset // 0) =~ $re;
		Time::HiRes::usleep(100_000);
	}
	return 0;
}

# Wait for a worker pass that started after now: "nothing happened" is
# checked after the worker had its chance, not after a fixed sleep
# (audit 7).  The pass sets rollup_state.last_pass to its transaction's
# start, and commits after judging alerts and the rest of the pass.
sub wait_for_pass
{
	my ($node, $passes) = @_;
	for (1 .. ($passes // 1))
	{
		my $now = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
		return 0 unless $node->poll_query_until('postgres',
			"SELECT last_pass > '$now' FROM pankha.rollup_state");
	}
	return 1;
}

my $archive = PostgreSQL::Test::Utils::tempdir();
my $no_such_dir = "$archive/does-not-exist";

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pankha'
pankha.database = 'postgres'
pankha.naptime = 1
pankha.liveness_flush = 1
pankha.offline_after = 30s
pankha.rollup_hour_delay = 0
pankha.archive_directory = '$no_such_dir'
});
$node->start;

# ---------------------------------------------------------------------
# Start: idle until the extension exists, then at work.
# ---------------------------------------------------------------------
ok( log_appears($node, qr/pankha worker started in database "postgres"/)
	  && log_appears($node, qr/pankha worker is idle: extension "pankha" is not installed/),
	'the worker starts and idles without the extension');

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE EXTENSION pankha');
ok(log_appears($node, qr/pankha worker is maintaining database "postgres"/, $log_offset),
	'the worker picks up CREATE EXTENSION');

# Helpers in the test database: frames and the check of every rollup
# against a direct aggregate of the raw frames through the decode views.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.frame(agent text, ts timestamptz, cpu real, rpm integer DEFAULT 1200)
RETURNS jsonb LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('agentId', agent, 'timestamp', (extract(epoch FROM ts) * 1000)::bigint,
    'sensors', jsonb_build_array(jsonb_build_object('id', 'cpu_temp', 'type', 'cpu', 'temperature', cpu),
                                 jsonb_build_object('id', 'ssd_temp', 'type', 'nvme', 'temperature', 30 + cpu / 10)),
    'fans', jsonb_build_array(jsonb_build_object('id', 'cpu_fan', 'rpm', rpm, 'speed', 55)),
    'systemHealth', jsonb_build_object('cpuUsage', cpu / 2));
-- Only the raw retention is compared: older rollups outlive their frames.
CREATE FUNCTION public.rollup_mismatches() RETURNS bigint LANGUAGE sql AS $$
    WITH s1 AS (SELECT agent_id, date_trunc('minute', ts) AS t, sensor_id, min(temperature) AS mn,
                       max(temperature) AS mx, avg(temperature) AS av, count(*) AS n
                FROM pankha.sensor_readings GROUP BY 1, 2, 3),
         s60 AS (SELECT agent_id, date_trunc('hour', ts) AS t, sensor_id, min(temperature) AS mn,
                        max(temperature) AS mx, avg(temperature) AS av, count(*) AS n
                 FROM pankha.sensor_readings GROUP BY 1, 2, 3),
         f1 AS (SELECT agent_id, date_trunc('minute', ts) AS t, fan_id, min(rpm) AS mn, max(rpm) AS mx,
                       avg(rpm) AS av FROM pankha.fan_readings GROUP BY 1, 2, 3),
         r1 AS (SELECT agent_id, date_trunc('minute', ts) AS t, count(*) AS n FROM pankha.frames GROUP BY 1, 2)
    SELECT (SELECT count(*) FROM s1 FULL JOIN (SELECT * FROM pankha.sensor_1m WHERE "time" > now() - interval '7 days') v
                ON v.agent_id = s1.agent_id AND v."time" = s1.t AND v.sensor_id = s1.sensor_id
            WHERE v.agent_id IS NULL OR s1.agent_id IS NULL OR v.min <> s1.mn OR v.max <> s1.mx
               OR abs(v.avg - s1.av) > 1e-9 OR v.samples <> s1.n)
         + (SELECT count(*) FROM s60 FULL JOIN (SELECT * FROM pankha.sensor_1h WHERE "time" > now() - interval '7 days') v
                ON v.agent_id = s60.agent_id AND v."time" = s60.t AND v.sensor_id = s60.sensor_id
            WHERE v.agent_id IS NULL OR s60.agent_id IS NULL OR v.min <> s60.mn OR v.max <> s60.mx
               OR abs(v.avg - s60.av) > 1e-9 OR v.samples <> s60.n)
         + (SELECT count(*) FROM f1 FULL JOIN (SELECT * FROM pankha.fan_1m WHERE "time" > now() - interval '7 days') v
                ON v.agent_id = f1.agent_id AND v."time" = f1.t AND v.fan_id = f1.fan_id
            WHERE v.agent_id IS NULL OR f1.agent_id IS NULL OR v.rpm_min <> f1.mn OR v.rpm_max <> f1.mx
               OR abs(v.rpm_avg - f1.av) > 1e-9)
         + (SELECT count(*) FROM r1 FULL JOIN (SELECT * FROM pankha.frames_1m WHERE "time" > now() - interval '7 days') v ON v.agent_id = r1.agent_id AND v."time" = r1.t
            WHERE v.agent_id IS NULL OR r1.agent_id IS NULL OR v.frames <> r1.n)
$$;
SELECT pankha.register_agent('w1', 'Worker test 1') IS NOT NULL;
SELECT pankha.register_agent('w2', 'Worker test 2') IS NOT NULL;
});

# NOTIFYs seen by a listening session, kept across polls.
my %heard;

# Wait until a notification on the session matches the pattern; returns
# the payload (undef on timeout).
sub wait_for_notify
{
	my ($session, $name, $pattern, $seconds) = @_;
	$seconds //= 30;
	my $deadline = time + $seconds;
	$heard{$name} //= '';
	while (1)
	{
		if ($heard{$name} =~ $pattern)
		{
			my $payload = $1 // $&;
			# Consume what was matched, so the same notice is not seen twice.
			$heard{$name} = $';
			return $payload;
		}
		return undef if time > $deadline;
		usleep(200_000);
		$heard{$name} .= $session->query('SELECT 1');
	}
}

my $listener = $node->background_psql('postgres');
$listener->set_query_timer_restart();
$listener->query_safe('LISTEN pankha_agent_status; LISTEN pankha_alert; LISTEN pankha_command_result; LISTEN pankha_command');

# ---------------------------------------------------------------------
# Partitions ahead; the rollup tiers are kept too.
# ---------------------------------------------------------------------
ok( $node->poll_query_until('postgres', q{
	SELECT to_regclass('pankha.readings_' || to_char(now() AT TIME ZONE 'UTC' + interval '2 days', 'YYYYMMDD')) IS NOT NULL
	   AND to_regclass('pankha.rollup_1m_' || to_char(now() AT TIME ZONE 'UTC' + interval '2 days', 'YYYYMMDD')) IS NOT NULL
	   AND to_regclass('pankha.rollup_1h_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')) IS NOT NULL
	}),
	'partitions of raw frames and rollups exist two days ahead');

# ---------------------------------------------------------------------
# Rollups by the worker match the raw data, also after late frames.
# ---------------------------------------------------------------------
# Both batches below start at one fixed minute, so the late maximum falls in
# the minute the check reads however long the first rollup takes.
$node->safe_psql('postgres', q{
	CREATE TABLE public.late_base AS SELECT date_trunc('minute', now()) - interval '10 minutes' AS base;
	SELECT pankha.ingest_batch('w1', (SELECT jsonb_agg(public.frame('w1', b.base + i * interval '5 seconds', 40 + i % 13))
	                                  FROM generate_series(0, 119) i, public.late_base b));
});
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0 AND (SELECT count(*) FROM pankha.rollup_1m) > 0'),
	'the worker rolls up new frames into 1-minute and 1-hour buckets that match the raw data');

# An agent re-sends its buffer after an outage: frames between the old ones
# and three hours back, with values that change min, max and avg.
$node->safe_psql('postgres', q{
	SELECT pankha.ingest_batch('w1', (SELECT jsonb_agg(public.frame('w1', b.base + i * interval '5 seconds' + interval '2 seconds', 90 - i))
	                                  FROM generate_series(0, 20) i, public.late_base b));
	SELECT pankha.ingest_batch('w1', (SELECT jsonb_agg(public.frame('w1', now() - interval '3 hours' + i * interval '5 seconds', 10 + i))
	                                  FROM generate_series(0, 30) i));
});
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0'),
	'late frames are folded into the old buckets they belong to');
is( $node->safe_psql('postgres', q{
	SELECT max(max) FROM pankha.sensor_1m WHERE agent_id = 'w1' AND sensor_id = 'cpu_temp'
	  AND "time" = (SELECT base FROM public.late_base)}),
	'90', 'a late maximum shows in its minute');

# ---------------------------------------------------------------------
# Agents go offline when silent and come back with the next frame.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', q{SELECT pankha.ingest('w2', public.frame('w2', clock_timestamp(), 50))});
like(wait_for_notify($listener, 'l', qr/"pankha_agent_status" with payload "(\{[^\n]*?"agent_id": "w2"[^\n]*?\})" received/) // '',
	qr/"status": "online"/, 'a frame brings the agent online, with a NOTIFY');
is($node->safe_psql('postgres', "SELECT status FROM pankha.agents WHERE agent_id = 'w2'"), 'online', 'status online');

# A SIGHUP makes a shorter threshold effective.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.offline_after = '2s'; SELECT pg_reload_conf()");
$node->wait_for_log(qr/pankha worker reloaded its configuration/, $log_offset);
like(wait_for_notify($listener, 'l', qr/"pankha_agent_status" with payload "(\{[^\n]*?"agent_id": "w2"[^\n]*?\})" received/) // '',
	qr/"status": "offline"/, 'a silent agent goes offline after pankha.offline_after, with a NOTIFY');
is($node->safe_psql('postgres', "SELECT status FROM pankha.agents WHERE agent_id = 'w2'"), 'offline', 'status offline');
$node->safe_psql('postgres', q{SELECT pankha.ingest('w2', public.frame('w2', clock_timestamp(), 50))});
like(wait_for_notify($listener, 'l', qr/"pankha_agent_status" with payload "(\{[^\n]*?"agent_id": "w2"[^\n]*?\})" received/) // '',
	qr/"status": "online"/, 'the next frame brings it back online');
$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.offline_after = '30s'; SELECT pg_reload_conf()");

# ---------------------------------------------------------------------
# Alerts: fire once, keep their cooldown, resolve.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', q{
	SELECT pankha.add_alert_rule('w2-hot', 'temperature_above', 70, cooldown => '8 seconds',
	                             severity => 'critical', agent_id => 'w2', target_id => 'cpu_temp');
	SELECT pankha.ingest('w2', public.frame('w2', clock_timestamp(), 85));
});
my $fired = wait_for_notify($listener, 'l', qr/"pankha_alert" with payload "(\{[^\n]*?\})" received/);
like($fired // '', qr/"rule": "w2-hot".*"state": "firing"/, 'a hot sensor fires the alert, with a NOTIFY');
like($fired // '', qr/"value": 85/, 'the NOTIFY carries the value');
ok(wait_for_pass($node, 2), 'two worker passes after the alert fired');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.alerts WHERE rule_name = 'w2-hot'}),
	'1', 'the alert fires once while the condition lasts');
$node->safe_psql('postgres', q{SELECT pankha.ingest('w2', public.frame('w2', clock_timestamp(), 40))});
like(wait_for_notify($listener, 'l', qr/"pankha_alert" with payload "(\{[^\n]*?\})" received/) // '',
	qr/"rule": "w2-hot".*"state": "resolved"/, 'cooling down resolves it, with a NOTIFY');
$node->safe_psql('postgres', q{SELECT pankha.ingest('w2', public.frame('w2', clock_timestamp(), 86))});
# a pass that judged the hot frame, and whether it ran inside the cooldown
my $hot_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
wait_for_pass($node);
is( $node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM pankha.alerts WHERE rule_name = 'w2-hot'
	         AND fired_at < (SELECT resolved_at FROM pankha.alerts WHERE rule_name = 'w2-hot'
	                         ORDER BY alert_id LIMIT 1) + interval '8 seconds') || ' '
	    || (SELECT last_pass > '$hot_at' AND last_pass < (SELECT resolved_at + interval '8 seconds'
	                                        FROM pankha.alerts WHERE rule_name = 'w2-hot' ORDER BY alert_id LIMIT 1)
	        FROM pankha.rollup_state)}),
	'1 true', 'hot again within the cooldown: a pass judged it and fired no new alert');
like(wait_for_notify($listener, 'l', qr/"pankha_alert" with payload "(\{[^\n]*?\})" received/) // '',
	qr/"rule": "w2-hot".*"state": "firing"/, 'after the cooldown the alert fires again');
is( $node->safe_psql('postgres', q{
	SELECT (SELECT fired_at FROM pankha.alerts WHERE rule_name = 'w2-hot' ORDER BY alert_id DESC LIMIT 1)
	     - (SELECT resolved_at FROM pankha.alerts WHERE rule_name = 'w2-hot' ORDER BY alert_id LIMIT 1) >= interval '8 seconds'}),
	't', 'the second alert came no sooner than the cooldown after the first resolved');

# ---------------------------------------------------------------------
# Commands: expiry, redelivery and dead letters (with the command queue).
# ---------------------------------------------------------------------
my $expiring = $node->safe_psql('postgres',
	"SELECT pankha.send_command('w1', 'noop', '{}', 'normal', '2 seconds')");
like(wait_for_notify($listener, 'l', qr/"pankha_command_result" with payload "(\{[^\n]*?"$expiring"[^\n]*?\})" received/) // '',
	qr/"status": "expired"/, 'a command past its ttl expires, with a NOTIFY');
is($node->safe_psql('postgres', "SELECT status FROM pankha.commands WHERE command_id = '$expiring'"),
	'expired', 'its status is expired');

my $redelivered = $node->safe_psql('postgres',
	"SELECT pankha.send_command('w1', 'noop', '{}', 'normal', '1 hour', NULL, 5)");
# The first NOTIFY is send_command's own; the second is the worker's.
wait_for_notify($listener, 'l', qr/"pankha_command" with payload "(\{[^\n]*?"$redelivered"[^\n]*?\})" received/);
$node->safe_psql('postgres', "SELECT count(*) FROM pankha.claim_commands(ARRAY['w1'], '1 second')");
like(wait_for_notify($listener, 'l', qr/"pankha_command" with payload "(\{[^\n]*?"$redelivered"[^\n]*?\})" received/) // '',
	qr/"agent_id": "w1"/, 'an unacknowledged command goes back to the queue, waking the bridges');
is($node->safe_psql('postgres', "SELECT status || ' ' || attempts FROM pankha.commands WHERE command_id = '$redelivered'"),
	'queued 1', 'it is queued again, one delivery counted');

my $dead = $node->safe_psql('postgres',
	"SELECT pankha.send_command('w1', 'noop', '{}', 'normal', '1 hour', NULL, 1)");
$node->safe_psql('postgres', "SELECT count(*) FROM pankha.claim_commands(ARRAY['w1'], '1 second')");
like(wait_for_notify($listener, 'l', qr/"pankha_command_result" with payload "(\{[^\n]*?"$dead"[^\n]*?\})" received/) // '',
	qr/"status": "dead"/, 'a command out of attempts is dead, with a NOTIFY');
is($node->safe_psql('postgres', "SELECT status FROM pankha.commands WHERE command_id = '$dead'"),
	'dead', 'its status is dead');
# The listener's last use: quit it now, while its server is up, not after
# the restart below (one run died after the last check, with status 29,
# where the quit was).
$listener->quit;

# ---------------------------------------------------------------------
# Retention: old partitions go, archived first; a failed archive keeps them.
# ---------------------------------------------------------------------
my $made = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT pankha.ensure_partition(now() - interval '30 days');
	INSERT INTO pankha.readings (agent_id, ts, received_at, payload)
	SELECT agent_id, now() - interval '30 days', now(), payload FROM pankha.readings WHERE agent_id = 'w1' LIMIT 1;
	SELECT pankha.ensure_time_partition('rollup_1m', 'day', now() - interval '200 days');
	INSERT INTO pankha.rollup_1m (agent_id, bucket, kind, slot, samples, last_ts)
	VALUES ('w1', date_trunc('minute', now() - interval '200 days'), 'r', 0, 1, now() - interval '200 days');
	SELECT pankha.ensure_time_partition('rollup_1h', 'month', now() - interval '3 years');
	INSERT INTO pankha.rollup_1h (agent_id, bucket, kind, slot, samples, last_ts)
	VALUES ('w1', date_trunc('hour', now() - interval '3 years'), 'r', 0, 1, now() - interval '3 years');
	COMMIT;
	SELECT 'readings_' || to_char(now() AT TIME ZONE 'UTC' - interval '30 days', 'YYYYMMDD'),
	       'rollup_1m_' || to_char(now() AT TIME ZONE 'UTC' - interval '200 days', 'YYYYMMDD'),
	       'rollup_1h_' || to_char(now() AT TIME ZONE 'UTC' - interval '3 years', 'YYYYMM');
});
my ($raw_old, $m_old, $h_old) = split /\|/, (split /\n/, $made)[-1];
$node->wait_for_log(qr/partition pankha\.\Q$raw_old\E was not dropped/);
is($node->safe_psql('postgres', "SELECT to_regclass('pankha.$raw_old') IS NOT NULL"), 't',
	'a partition whose archive fails is kept (and the failure logged)');
# (the directory the archive failed in was not made, and nothing went to
# the one configured next: audit 15)
ok(!-e $no_such_dir && !-e "$archive/$raw_old.csv.gz",
	'and no archive directory or file appears');

$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.archive_directory = '$archive'; SELECT pg_reload_conf()");
ok( $node->poll_query_until('postgres', qq{
	SELECT to_regclass('pankha.$raw_old') IS NULL AND to_regclass('pankha.$m_old') IS NULL
	   AND to_regclass('pankha.$h_old') IS NULL}),
	'partitions past each retention tier are dropped once archived');
for my $part ($raw_old, $m_old, $h_old)
{
	my $file = "$archive/$part.csv.gz";
	ok(-s $file, "$part was archived to $part.csv.gz");
	my $csv = `gzip -dc '$file'`;
	my @lines = split /\n/, $csv;
	is(scalar(@lines), 2, "$part.csv.gz holds a header and its one row");
	like($lines[1] // '', qr/(^|,)w1,/, "$part.csv.gz holds the row's data");
}
ok(!glob("$archive/*.part"), 'no partial archive files are left');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM pankha.time_partitions
	WHERE range_end <= now() - pankha.retention(parent)}),
	'0', 'nothing past its retention remains');
is($node->safe_psql('postgres', "SELECT count(*) FROM pankha.frames WHERE agent_id = 'w1' AND ts > now() - interval '1 day'"),
	'172', 'current data is untouched');
is( $node->safe_psql('postgres', q{
	SELECT sum(frames) FROM pankha.frames_1m
	WHERE agent_id = 'w1' AND "time" BETWEEN now() - interval '31 days' AND now() - interval '29 days'}),
	'1', 'the 1-minute rollup of a dropped raw day outlives it');

is( $node->safe_psql('postgres', qq{
	SELECT string_agg(parent || ' ' || (archived_to = '$archive/' || substr(partition, 8) || '.csv.gz'), ',' ORDER BY parent)
	  FROM pankha.archived_partitions WHERE partition IN ('pankha.$raw_old', 'pankha.$m_old', 'pankha.$h_old')}),
	'readings true,rollup_1h true,rollup_1m true', 'each dropped partition is recorded with its archive file');

# ---------------------------------------------------------------------
# Bounded size: what grows row by row is pruned after its retention, at
# the defaults; what is still in use stays.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', q{
	-- Commands: finished a month ago go; an unfinished old one stays.
	UPDATE pankha.commands SET created_at = now() - interval '31 days' WHERE status IN ('expired', 'dead');
	CREATE TABLE public.old_queued AS
	SELECT pankha.send_command('w2', 'noop', '{}', 'normal', '60 days') AS id;
	UPDATE pankha.commands SET created_at = now() - interval '31 days' WHERE command_id = (SELECT id FROM public.old_queued);
	-- Connections: closed a month ago go; open and recent ones stay.
	SELECT pankha.connection_closed(pankha.connection_opened('w1', 'bridge-old'), 1000, 'bye');
	UPDATE pankha.connections SET connected_at = now() - interval '32 days', closed_at = now() - interval '31 days'
	 WHERE bridge_id = 'bridge-old';
	SELECT pankha.connection_opened('w2', 'bridge-open');
	UPDATE pankha.connections SET connected_at = now() - interval '60 days' WHERE bridge_id = 'bridge-open';
	SELECT pankha.connection_closed(pankha.connection_opened('w1', 'bridge-new'), 1000, 'bye');
	-- Alerts: resolved half a year ago goes; an old firing one stays.
	UPDATE pankha.alerts SET fired_at = now() - interval '182 days', resolved_at = now() - interval '181 days'
	 WHERE alert_id = (SELECT min(alert_id) FROM pankha.alerts WHERE state = 'resolved');
	UPDATE pankha.alerts SET fired_at = now() - interval '200 days'
	 WHERE alert_id = (SELECT max(alert_id) FROM pankha.alerts WHERE state = 'firing');
	-- Alert state: a series idle for ever goes; one in its cooldown stays.
	INSERT INTO pankha.alert_state (rule_id, agent_id, target_id)
	SELECT rule_id, 'w1', 'idle_sensor' FROM pankha.alert_rules WHERE name = 'w2-hot';
	INSERT INTO pankha.alert_state (rule_id, agent_id, target_id, last_resolved_at)
	SELECT rule_id, 'w1', 'recent_sensor', now() - interval '1 day' FROM pankha.alert_rules WHERE name = 'w2-hot';
	-- Status reports: a month-old one goes, a fresh one stays.
	SELECT pankha.record_status('w1', '{"uptime": 1}');
	SELECT pankha.record_status('w2', '{"uptime": 2}');
	UPDATE pankha.agent_reports SET received_at = now() - interval '31 days' WHERE agent_id = 'w1';
	-- The record of dropped partitions: two years old goes.
	INSERT INTO pankha.archived_partitions (partition, parent, range_start, range_end, bytes, dropped_at)
	VALUES ('pankha.readings_20000101', 'readings', '2000-01-01', '2000-01-02', 8192, now() - interval '731 days');
});
ok( $node->poll_query_until('postgres', q{
	SELECT NOT EXISTS (SELECT FROM pankha.commands WHERE status IN ('expired', 'dead'))
	   AND NOT EXISTS (SELECT FROM pankha.connections WHERE bridge_id = 'bridge-old')
	   AND NOT EXISTS (SELECT FROM pankha.alerts WHERE resolved_at < now() - interval '180 days')
	   AND NOT EXISTS (SELECT FROM pankha.alert_state WHERE target_id = 'idle_sensor')
	   AND NOT EXISTS (SELECT FROM pankha.agent_reports WHERE agent_id = 'w1')
	   AND NOT EXISTS (SELECT FROM pankha.archived_partitions WHERE partition = 'pankha.readings_20000101')}),
	'the worker prunes finished commands, closed connections, resolved alerts, idle alert state, stale reports and old partition records');
is($node->safe_psql('postgres', q{SELECT status FROM pankha.commands WHERE command_id = (SELECT id FROM public.old_queued)}),
	'queued', 'an old command still queued is kept');
is($node->safe_psql('postgres', q{SELECT string_agg(bridge_id, ',' ORDER BY bridge_id) FROM pankha.connections
                                  WHERE bridge_id IN ('bridge-open', 'bridge-new')}),
	'bridge-new,bridge-open', 'open and recent connections are kept');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.alerts WHERE state = 'firing' AND fired_at < now() - interval '180 days'}),
	'1', 'a firing alert is kept however old');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.alert_state WHERE target_id = 'recent_sensor'}),
	'1', 'alert state within the retention is kept');
is($node->safe_psql('postgres', q{SELECT string_agg(agent_id, ',') FROM pankha.agent_reports}),
	'w2', 'the fresh status report is kept');
is($node->safe_psql('postgres', "SELECT count(*) FROM pankha.archived_partitions WHERE partition IN ('pankha.$raw_old', 'pankha.$m_old', 'pankha.$h_old')"),
	'3', 'recent partition records are kept');

# A shorter retention takes effect on reload.
$node->safe_psql('postgres', q{
	SELECT pankha.connection_closed(pankha.connection_opened('w1', 'bridge-hour'), 1000, 'bye');
	UPDATE pankha.connections SET connected_at = now() - interval '3 hours', closed_at = now() - interval '2 hours'
	 WHERE bridge_id = 'bridge-hour';
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.connections WHERE bridge_id = 'bridge-hour'}), '1',
	'a connection closed two hours ago is kept at the default retention');
$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.connection_retention = '1h'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', q{SELECT NOT EXISTS (SELECT FROM pankha.connections WHERE bridge_id = 'bridge-hour')}),
	'and pruned once pankha.connection_retention is 1h');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.connections WHERE bridge_id = 'bridge-new'}), '1',
	'while the connection closed just now stays');
$node->safe_psql('postgres', "ALTER SYSTEM RESET pankha.connection_retention; SELECT pg_reload_conf()");

# ---------------------------------------------------------------------
# Bad states: a missing partition, a dropped extension.
# ---------------------------------------------------------------------
my $today_1m = $node->safe_psql('postgres', q{SELECT 'rollup_1m_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')});
$node->safe_psql('postgres', "DROP TABLE pankha.$today_1m");
ok($node->poll_query_until('postgres', "SELECT to_regclass('pankha.$today_1m') IS NOT NULL"),
	'a dropped current partition is created again');
$node->safe_psql('postgres', q{SELECT pankha.rollup_rebuild()});
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0'),
	'and pankha.rollup_rebuild() restores its rollups');

$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION pankha CASCADE');
my $idled = log_appears($node, qr/pankha worker is idle: extension "pankha" is not installed/, $log_offset);
$node->safe_psql('postgres', 'CREATE EXTENSION pankha');
ok($idled && log_appears($node, qr/pankha worker is maintaining database "postgres"/, $log_offset),
	'the worker idles while the extension is dropped and resumes when it is back');
unlike(slurp_file($node->logfile, $log_offset), qr/ERROR|FATAL|PANIC/, 'without an error in the log');
# Wait for the worker's first pass to create today's partitions.
$node->poll_query_until('postgres', q{
	SELECT to_regclass('pankha.readings_' || to_char(now() AT TIME ZONE 'UTC' + interval '2 days', 'YYYYMMDD')) IS NOT NULL});
$node->safe_psql('postgres', q{
	SELECT pankha.register_agent('w1', 'Worker test 1') IS NOT NULL;
	SELECT pankha.ingest_batch('w1', (SELECT jsonb_agg(public.frame('w1', now() - interval '5 minutes' + i * interval '5 seconds', 50 + i % 7))
	                                  FROM generate_series(0, 59) i));
});
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0 AND (SELECT count(*) FROM pankha.rollup_1m) > 0'),
	'rollups work in the new extension');

# ---------------------------------------------------------------------
# SIGHUP: the worker can be paused and resumed without a restart.
# ---------------------------------------------------------------------
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.worker_enabled = off; SELECT pg_reload_conf()");
$node->wait_for_log(qr/pankha worker is idle: pankha.worker_enabled is off/, $log_offset);
my $last_pass = $node->safe_psql('postgres', 'SELECT last_pass FROM pankha.rollup_state');
$node->safe_psql('postgres', q{SELECT pankha.ingest('w1', public.frame('w1', clock_timestamp(), 61))});
# the positive event: the worker's loop goes round twice more (each reload
# is handled at the top of it, before the pass it would make if enabled)
for my $round (1 .. 2)
{
	$log_offset = -s $node->logfile;
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(log_appears($node, qr/pankha worker reloaded its configuration \(naptime \d+ s, worker_enabled off\)/,
			$log_offset), "while disabled the worker still handles a reload ($round)");
}
is($node->safe_psql('postgres', 'SELECT last_pass FROM pankha.rollup_state'), $last_pass,
	'while disabled the worker makes no pass');
is($node->safe_psql('postgres', 'SELECT public.rollup_mismatches() > 0'), 't',
	'and new frames wait');
$node->safe_psql('postgres', "ALTER SYSTEM SET pankha.worker_enabled = on; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0'),
	're-enabled, it catches up');

# ---------------------------------------------------------------------
# SIGTERM ends the worker promptly; it is started again; restarts keep state.
# ---------------------------------------------------------------------
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pankha worker'");
ok($pid =~ /^\d+$/, 'the worker shows in pg_stat_activity');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'SIGTERM ends the worker');
ok(log_appears($node, qr/pankha worker started/, $log_offset), 'the postmaster starts it again');

my $alerts_before = $node->safe_psql('postgres', 'SELECT count(*) FROM pankha.alerts');
$node->restart;
$node->wait_for_log(qr/pankha worker is maintaining database "postgres"/, 0);
$node->safe_psql('postgres', q{SELECT pankha.ingest('w1', public.frame('w1', clock_timestamp(), 62))});
ok($node->poll_query_until('postgres', 'SELECT public.rollup_mismatches() = 0'),
	'after a restart the worker carries on from its watermark');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pankha.alerts'), $alerts_before,
	'alert history survives the restart');

$node->stop('fast');
done_testing();
