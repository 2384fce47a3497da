-- Rollups: the 1-minute and 1-hour tiers match a direct aggregate of the
-- raw frames, stay exact when late frames land in old buckets, and each
-- pass reads only the frames stored since the previous one.
\i sql/worker_helpers.psql
SELECT pg_temp.base() AS base \gset

SELECT pankha.register_agent('r1', 'Rig 1') IS NOT NULL AS registered,
       pankha.register_agent('r2', 'Rig 2') IS NOT NULL AS registered;
-- 90 minutes of r1 every 10 s, an hour of r2 every 15 s.
SELECT pankha.ingest_batch('r1', pg_temp.frames('r1', :'base', 10, 540)) AS r1_frames,
       pankha.ingest_batch('r2', pg_temp.frames('r2', :'base'::timestamptz + interval '20 minutes', 15, 240)) AS r2_frames;

-- Before any pass nothing is rolled up, and the check says so.
SELECT * FROM pg_temp.rollup_mismatches();

-- The pass reads up to a second ago (see the rollup_horizon isolation test).
SELECT pg_sleep(1.1);
SELECT frames, minutes, hours, watermark <= now() AS watermark_in_past FROM pankha.rollup(true);
SELECT * FROM pg_temp.rollup_mismatches();
SELECT kind, count(*) AS buckets, sum(samples) AS samples FROM pankha.rollup_1m GROUP BY kind ORDER BY kind;
SELECT kind, count(*) AS buckets, sum(samples) AS samples FROM pankha.rollup_1h GROUP BY kind ORDER BY kind;

-- Nothing new: the next pass reads nothing.
SELECT pg_sleep(1.1);
SELECT frames, minutes, hours FROM pankha.rollup(true);

-- Re-sent frames are stored once and change nothing.
SELECT pankha.ingest_batch('r1', pg_temp.frames('r1', :'base', 10, 30)) AS resent_new;
SELECT pg_sleep(1.1);
SELECT frames FROM pankha.rollup(true);

-- Late frames: r1 re-sends its buffer into old minutes (between its frames,
-- with extreme values), and r2 reports a frame from two days ago, for
-- which no partition existed yet.
SELECT pankha.ingest('r1', jsonb_build_object('timestamp', (extract(epoch FROM :'base'::timestamptz + interval '17 minutes 5 seconds') * 1000)::bigint,
           'sensors', '[{"id": "cpu_temp", "temperature": 99.5}]'::jsonb,
           'fans', '[{"id": "cpu_fan", "rpm": 5000, "speed": 100}]'::jsonb,
           'systemHealth', '{"cpuUsage": 100}'::jsonb)) AS late_1,
       pankha.ingest('r1', jsonb_build_object('timestamp', (extract(epoch FROM :'base'::timestamptz + interval '61 minutes 7 seconds') * 1000)::bigint,
           'sensors', '[{"id": "nvme_temp", "temperature": -5}]'::jsonb)) AS late_2,
       pankha.ingest('r2', pg_temp.frame('r2', :'base'::timestamptz - interval '2 days', 3)) AS two_days_old;
SELECT * FROM pg_temp.rollup_mismatches() WHERE mismatches > 0;
SELECT pg_sleep(1.1);
SELECT frames, minutes, hours FROM pankha.rollup(true);
SELECT * FROM pg_temp.rollup_mismatches();
SELECT "time" - :'base'::timestamptz AS minute, max, samples FROM pankha.sensor_1m
WHERE agent_id = 'r1' AND sensor_id = 'cpu_temp' AND "time" = :'base'::timestamptz + interval '17 minutes';
SELECT count(*) AS new_rollup_partition FROM pankha.time_partitions
WHERE parent = 'rollup_1m' AND range_start = date_trunc('day', (:'base'::timestamptz - interval '2 days') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

-- The hour tier waits pankha.rollup_hour_delay (a minute by default)
-- between recomputations; the minute tier does not.
SELECT pankha.ingest('r2', pg_temp.frame('r2', :'base'::timestamptz + interval '30 minutes 1 second', 7)) AS late_3;
SELECT pg_sleep(1.1);
SELECT frames, minutes, hours FROM pankha.rollup();
SELECT view, mismatches FROM pg_temp.rollup_mismatches() WHERE mismatches > 0;
SELECT agent_id, bucket - :'base'::timestamptz AS pending_hour FROM pankha.rollup_pending_hours;
SELECT frames, minutes, hours FROM pankha.rollup(true);
SELECT * FROM pg_temp.rollup_mismatches() WHERE mismatches > 0;

-- The server clock steps back an hour: frames stored while it is behind
-- have received_at values below the watermark, and are still rolled up.
UPDATE pankha.rollup_state SET last_pass = now() + interval '1 hour';
INSERT INTO pankha.readings (agent_id, ts, received_at, payload)
SELECT agent_id, ts + interval '3 seconds', now() - interval '30 minutes', payload
FROM pankha.readings WHERE agent_id = 'r2' ORDER BY ts DESC LIMIT 1;
SELECT pg_sleep(1.1);
SELECT frames FROM pankha.rollup(true);
SELECT * FROM pg_temp.rollup_mismatches() WHERE mismatches > 0;

-- A rebuild from scratch gives the same rollups.
CREATE TEMP TABLE before AS SELECT * FROM pankha.rollup_1h;
DELETE FROM pankha.rollup_1m;
DELETE FROM pankha.rollup_1h;
SELECT pg_sleep(1.1);
SELECT pankha.rollup_rebuild() AS rebuilt_from_frames;
SELECT * FROM pg_temp.rollup_mismatches() WHERE mismatches > 0;
SELECT count(*) AS differing_hours FROM before b FULL JOIN pankha.rollup_1h h USING (agent_id, bucket, kind, slot)
WHERE b IS DISTINCT FROM h;

-- Partition helpers refuse what they cannot do.
SELECT pg_temp.err($$SELECT pankha.ensure_time_partition('rollup_1m', 'week', now())$$);
SELECT pankha.ensure_time_partition('rollup_1h', 'month', '2030-02-10 12:00+00')::text AS month_partition;
SELECT range_start, range_end FROM pankha.time_partitions WHERE partition = 'pankha.rollup_1h_203002'::regclass;

SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
