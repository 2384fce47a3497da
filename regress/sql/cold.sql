-- Compressed cold storage (issue 16): frames packed into pankha.frames_cold
-- read exactly as they did raw, through every view and function that reads
-- frames; late and re-sent frames for packed hours; rollup rebuilds and
-- retention over packed days.
\i sql/queue_helpers.psql
SET client_min_messages = warning;
SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') - interval '2 days') AT TIME ZONE 'UTC' AS day0 \gset
SELECT setseed(0.16);
\set nagents 3
\set nframes 900
\set prefix cold-
\i sql/cold_data.psql
SELECT pg_sleep(1.1);
SELECT frames FROM pankha.rollup(true);

-- What every reader says on raw frames.
CREATE TEMP TABLE series AS
SELECT s.agent_id, s.sensor_id AS series FROM pankha.sensors s WHERE s.agent_id LIKE 'cold-%'
UNION ALL SELECT f.agent_id, f.fan_id FROM pankha.fans f WHERE f.agent_id LIKE 'cold-%'
UNION ALL SELECT a.agent_id, m.metric FROM pankha.agents a, pankha.health_metrics() m
 WHERE a.agent_id LIKE 'cold-%';
CREATE TEMP VIEW readers AS
SELECT 'sensor_readings' AS reader, to_jsonb(x) AS row FROM pankha.sensor_readings x WHERE x.agent_id LIKE 'cold-%'
UNION ALL SELECT 'fan_readings', to_jsonb(x) FROM pankha.fan_readings x WHERE x.agent_id LIKE 'cold-%'
UNION ALL SELECT 'health_readings', to_jsonb(x) FROM pankha.health_readings x WHERE x.agent_id LIKE 'cold-%'
UNION ALL SELECT 'latest', to_jsonb(x) FROM pankha.latest x WHERE x.agent_id LIKE 'cold-%'
UNION ALL SELECT 'frames', to_jsonb(x) FROM pankha.frames x WHERE x.agent_id LIKE 'cold-%'
UNION ALL SELECT 'history ' || coalesce(res::text, 'auto'), to_jsonb(h) || jsonb_build_object('series', s.series)
  FROM series s,
       unnest(ARRAY[NULL, '10 seconds', '1 minute', '15 minutes', '1 hour']::interval[]) res,
       LATERAL pankha.history(s.agent_id, s.series, :'day0'::timestamptz + interval '20 minutes',
                              :'day0'::timestamptz + interval '100 minutes', res) h
UNION ALL SELECT 'history 1 day', to_jsonb(h) || jsonb_build_object('series', s.series)
  FROM series s, LATERAL pankha.history(s.agent_id, s.series, :'day0', :'day0'::timestamptz + interval '1 day') h
UNION ALL SELECT 'agent_report', to_jsonb(r) - 'status'
  FROM pankha.agents a, LATERAL pankha.agent_report(a.agent_id, :'day0', :'day0'::timestamptz + interval '2 hours') r
 WHERE a.agent_id LIKE 'cold-%'
UNION ALL SELECT 'api_agent latest', pankha.api_agent('cold-viewer', 'viewer', jsonb_build_object('agent_id', a.agent_id)) -> 'latest'
  FROM pankha.agents a WHERE a.agent_id LIKE 'cold-%'
UNION ALL SELECT 'api_fleet latest', i -> 'latest'
  FROM jsonb_array_elements(pankha.api_fleet('cold-viewer', 'viewer', '{"q": "cold-", "page_size": 100}') -> 'items') i
UNION ALL SELECT 'rollup_1m', to_jsonb(m) FROM pankha.rollup_1m m WHERE m.agent_id LIKE 'cold-%'
UNION ALL SELECT 'rollup_1h', to_jsonb(m) FROM pankha.rollup_1h m WHERE m.agent_id LIKE 'cold-%';
CREATE TEMP TABLE raw_answers AS SELECT * FROM readers;
SELECT reader, count(*) FROM raw_answers GROUP BY 1 ORDER BY 1;

-- Compress the past days, a partition and two agents a call, as the worker does.
CREATE FUNCTION pg_temp.compress_all(before timestamptz) RETURNS TABLE (calls int, frames bigint)
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    calls := 0; frames := 0;
    LOOP
        n := pankha.compress_before(before, 2);
        EXIT WHEN n = 0;
        calls := calls + 1; frames := frames + n;
    END LOOP;
    RETURN NEXT;
END $$;
SELECT * FROM pg_temp.compress_all(date_trunc('day', now()));
SELECT count(*) AS raw_left FROM pankha.readings WHERE agent_id LIKE 'cold-%';
SELECT count(*) AS cold_rows, sum(frames) AS cold_frames,
       bool_and(first_ts >= hour AND last_ts < hour + interval '1 hour') AS rows_in_their_hour
  FROM pankha.frames_cold WHERE agent_id LIKE 'cold-%';
-- every reader gives the same answers
CREATE TEMP VIEW differences AS
SELECT reader, count(*) FROM (
    (SELECT * FROM raw_answers EXCEPT ALL SELECT * FROM readers)
    UNION ALL (SELECT * FROM readers EXCEPT ALL SELECT * FROM raw_answers)) d
GROUP BY 1 ORDER BY 1;
SELECT * FROM differences;

-- A time filter on pankha.frames and the reading views skips the packed
-- hours outside it (the planner hook of cold.c): the rows of frames_cold
-- read, from EXPLAIN ANALYZE, against those of the agents, and the answers
-- are those of the filter applied to every frame.
CREATE FUNCTION pg_temp.cold_rows_read(q text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) ' || q INTO plan;
    RETURN (SELECT coalesce(sum((n ->> 'Actual Rows')::bigint * (n ->> 'Actual Loops')::bigint), 0)
              FROM jsonb_path_query(plan, 'strict $.**') n
             WHERE jsonb_typeof(n) = 'object' AND n ->> 'Relation Name' = 'frames_cold');
END $$;
CREATE FUNCTION pg_temp.query_difference(a text, b text) RETURNS TABLE (d bigint, n bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT (SELECT count(*) FROM ((%1$s EXCEPT ALL %2$s) UNION ALL (%2$s EXCEPT ALL %1$s)) x), '
                                '(SELECT count(*) FROM (%1$s) y)', a, b);
END $$;
SELECT count(*) AS cold_rows_of_agents FROM pankha.frames_cold WHERE agent_id LIKE 'cold-%';
SELECT v AS reader, label AS filter,
       pg_temp.cold_rows_read(format('SELECT * FROM pankha.%s WHERE agent_id LIKE ''cold-%%'' AND %s', v, f)) AS cold_rows_read,
       pg_temp.cold_rows_read(format('SELECT * FROM (SELECT * FROM pankha.%s OFFSET 0) x WHERE agent_id LIKE ''cold-%%'' AND %s', v, f)) AS unfiltered_read,
       (SELECT d || ' of ' || n FROM pg_temp.query_difference(
            format('SELECT to_jsonb(x) FROM pankha.%s x WHERE agent_id LIKE ''cold-%%'' AND %s', v, f),
            format('SELECT to_jsonb(x) FROM (SELECT * FROM pankha.%s OFFSET 0) x WHERE agent_id LIKE ''cold-%%'' AND %s', v, f)) d) AS differences
  FROM unnest(ARRAY['frames', 'sensor_readings', 'fan_readings', 'health_readings']) v,
       (VALUES ('a: 10 minutes', format('ts >= %L AND ts < %L', :'day0'::timestamptz + interval '70 minutes', :'day0'::timestamptz + interval '80 minutes')),
               ('b: X <= ts', format('%L <= ts', :'day0'::timestamptz + interval '100 minutes')),
               ('c: between', format('ts BETWEEN %L AND %L', :'day0'::timestamptz, :'day0'::timestamptz + interval '10 minutes')),
               ('d: equal', format('ts = %L', (SELECT ts FROM pankha.frames WHERE agent_id = 'cold-2' ORDER BY ts OFFSET 100 LIMIT 1))),
               ('e: now()', 'ts > now() - interval ''1 day''')) l(label, f)
 ORDER BY 1, 2;

-- A late frame for a packed hour is stored, visible, rolled up and folded
-- in; a packed frame sent again is not stored twice.
SELECT pankha.ingest('cold-1', jsonb_build_object(
    'timestamp', (extract(epoch FROM :'day0'::timestamptz + interval '30 minutes 1.5 seconds') * 1000)::bigint,
    'sensors', jsonb_build_array(jsonb_build_object('id', 's1', 'temperature', 99.5)))) AS late_stored;
SELECT pankha.ingest('cold-2', frame) AS resent_stored FROM cold_input WHERE agent_id = 'cold-2' AND i = 400;
-- in a batch, as a raw duplicate is: stored false, no sqlstate
SELECT count(*) FILTER (WHERE sqlstate IS NULL) AS resent_in_batch,
       count(*) FILTER (WHERE stored) AS stored_again FROM pankha.ingest_many(ARRAY['cold-3', 'cold-3'],
    ARRAY(SELECT frame::text FROM cold_input WHERE agent_id = 'cold-3' AND i IN (10, 11) ORDER BY i));
SELECT count(*) AS raw_rows FROM pankha.readings WHERE agent_id LIKE 'cold-%';
SELECT agent_id, ts - :'day0'::timestamptz AS at, temperature FROM pankha.sensor_readings
 WHERE temperature = 99.5 AND agent_id LIKE 'cold-%';
SELECT pg_sleep(1.1);
SELECT frames FROM pankha.rollup(true);
SELECT samples, max FROM pankha.rollup_1m
 WHERE agent_id = 'cold-1' AND kind = 's' AND bucket = :'day0'::timestamptz + interval '30 minutes'
   AND slot = (SELECT slot FROM pankha.sensors WHERE agent_id = 'cold-1' AND sensor_id = 's1');
-- the answers with the late frame, raw, then folded in
TRUNCATE raw_answers;
INSERT INTO raw_answers SELECT * FROM readers;
SELECT * FROM pg_temp.compress_all(date_trunc('day', now()));
SELECT count(*) AS raw_left FROM pankha.readings WHERE agent_id LIKE 'cold-%';
SELECT * FROM differences;
SELECT count(*) AS frames, count(DISTINCT (agent_id, ts)) AS distinct_frames
  FROM pankha.frames WHERE agent_id LIKE 'cold-%';

-- A rebuild recomputes the rollups from the packed frames.
DELETE FROM pankha.rollup_1m WHERE agent_id LIKE 'cold-%';
DELETE FROM pankha.rollup_1h WHERE agent_id LIKE 'cold-%';
SELECT pankha.rollup_rebuild() >= 2701 AS rebuilt;
SELECT * FROM differences;

-- The codec gives back any bytes exactly, whatever their shape.
SELECT count(*) AS blocks, bool_and(ok) AS exact FROM (
    SELECT b, (SELECT array_agg(u.ts) = t AND array_agg(u.received_at) = r AND array_agg(u.payload) = p
                 FROM pankha.cold_frames(pankha.cold_pack(t, r, p)) u) AS ok
    FROM (SELECT b, array_agg(ts ORDER BY k) t, array_agg(rx ORDER BY k) r, array_agg(pl ORDER BY k) p
            FROM (SELECT b, k, '2026-01-01'::timestamptz + (random() * 1e9)::bigint * interval '1 microsecond' AS ts,
                         '2026-01-01'::timestamptz + (random() * 1e9)::bigint * interval '1 microsecond' AS rx,
                         (SELECT coalesce(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), '')
                            FROM generate_series(1, (random() * 40)::int + b * 0 + k * 0))::text AS hex
                    FROM generate_series(1, 50) b, generate_series(1, 1 + b * 3) k) x,
                 LATERAL decode(x.hex, 'hex') pl
           GROUP BY b) g) t;
-- Real payloads (cut into fields), some with a byte changed or cut short
-- (kept as they are, or cut otherwise), in blocks of random runs.
SELECT count(*) AS real_blocks, bool_and(ok) AS exact FROM (
    SELECT (SELECT array_agg(u.ts) = t AND array_agg(u.received_at) = r AND array_agg(u.payload) = p
              FROM pankha.cold_frames(pankha.cold_pack(t, r, p)) u) AS ok
    FROM (SELECT b, array_agg(ts ORDER BY ts) t, array_agg(received_at ORDER BY ts) r,
                 array_agg(CASE WHEN m < 0.1 AND length(payload) > 2
                                THEN set_byte(payload, (random() * (length(payload) - 1))::int, (random() * 255)::int)
                                WHEN m < 0.15 THEN substr(payload, 1, (random() * length(payload))::int)
                                ELSE payload END ORDER BY ts) p
            FROM (SELECT f.*, random() AS m, (row_number() OVER (ORDER BY agent_id, ts)) / 37 AS b
                    FROM pankha.frames f WHERE f.agent_id LIKE 'cold-%') x
           GROUP BY b) g) t;
-- and one series of a block is what payload_values gives
SELECT count(*) AS series_checked, bool_and(same) AS same FROM (
    SELECT c.hour, v.kind, v.slot,
           (SELECT array_agg(u.value ORDER BY u.ts) FROM pankha.cold_series(c.packed, '-infinity', 'infinity', v.kind, v.slot) u)
           IS NOT DISTINCT FROM
           (SELECT array_agg(w.value ORDER BY f.ts) FROM pankha.cold_frames(c.packed) f
              CROSS JOIN LATERAL pankha.payload_values(f.payload) w
             WHERE w.kind = v.kind AND w.slot = v.slot AND w.value IS NOT NULL) AS same
    FROM pankha.frames_cold c
    CROSS JOIN LATERAL (SELECT DISTINCT w.kind, w.slot FROM pankha.cold_frames(c.packed) f,
                        LATERAL pankha.payload_values(f.payload) w) v
    WHERE c.agent_id LIKE 'cold-%') s;
SELECT pg_temp.err('SELECT * FROM pankha.cold_frames(''\x0102''::bytea)') AS corrupt_block;
SELECT pg_temp.err('SELECT pankha.cold_pack(ARRAY[now()], ARRAY[now(), now()], ARRAY[''\x01''::bytea])') AS mismatched;

-- Forgetting an agent forgets its packed frames.
DELETE FROM pankha.agents WHERE agent_id = 'cold-3';
SELECT count(*) AS cold_rows_of_forgotten FROM pankha.frames_cold WHERE agent_id = 'cold-3';

