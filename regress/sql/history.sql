-- pankha.history(): the resolution picked from the span or asked for, the
-- same numbers as a direct aggregate of the raw data at every resolution,
-- the multi-series form, and a clear error for every bad argument.
\i sql/worker_helpers.psql
-- An even UTC hour 5 to 7 hours ago, so 2-hour buckets fall the same way on every run.
SELECT date_bin('2 hours', now() - interval '5 hours', '2001-01-01 00:00+00') AS base \gset

SELECT pankha.register_agent('h1', 'History 1') IS NOT NULL AS registered,
       pankha.register_agent('h2', 'History 2 (no frames)') IS NOT NULL AS registered;
-- Four hours of frames every 20 s.
SELECT pankha.ingest_batch('h1', pg_temp.frames('h1', :'base', 20, 720)) AS frames;
SELECT pg_sleep(1.1);
SELECT frames, minutes > 0 AS rolled_up FROM pankha.rollup(true);

-- The source follows the span: raw frames up to 2 hours (within the raw
-- retention), 1-minute rollups up to 3 days, 1-hour rollups beyond.  An
-- explicit resolution picks the finest source it is a multiple of.
SELECT span, pankha.history_source(now() - span, now()) AS source
FROM unnest('{30 minutes, 2 hours, 2 hours 1 second, 1 day, 3 days, 3 days 1 second, 30 days}'::interval[]) span;
SELECT pankha.history_source(now() - interval '9 days', now() - interval '8 days') AS older_than_raw;
SELECT resolution, pankha.history_source(now() - interval '30 days', now(), resolution) AS source
FROM unnest('{10 seconds, 1 minute, 15 minutes, 1 hour, 6 hours, 1 day}'::interval[]) resolution;

-- Raw: one row per frame, the value itself.
SELECT count(*) AS rows, sum(samples) AS samples, bool_and(min = max AND min = avg) AS one_value_each
FROM pankha.history('h1', 'cpu_temp', :'base', :'base'::timestamptz + interval '1 hour');
SELECT bucket - :'base'::timestamptz AS at, min, max, avg, samples
FROM pankha.history('h1', 'cpu_temp', :'base', :'base'::timestamptz + interval '1 minute');

-- Each resolution against the same aggregate computed from the raw view.
CREATE FUNCTION pg_temp.direct(series text, width interval, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (bucket timestamptz, min real, max real, avg double precision, samples bigint)
LANGUAGE sql AS $$
    SELECT date_bin(width, v.ts, pankha.bucket_origin()), min(v.val), max(v.val), avg(v.val), count(*)
    FROM (SELECT ts, temperature AS val FROM pankha.sensor_readings WHERE agent_id = 'h1' AND sensor_id = series
          UNION ALL
          SELECT ts, rpm FROM pankha.fan_readings WHERE agent_id = 'h1' AND fan_id = series
          UNION ALL
          SELECT ts, cpu_usage FROM pankha.health_readings WHERE agent_id = 'h1' AND series = 'cpu_usage') v
    WHERE v.ts >= date_bin(width, from_ts, pankha.bucket_origin()) AND v.ts < to_ts
    GROUP BY 1
$$;
CREATE FUNCTION pg_temp.differences(series text, width interval, from_ts timestamptz, to_ts timestamptz,
                                    resolution interval)
RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*)
    FROM pg_temp.direct(series, width, from_ts, to_ts) d
    FULL JOIN pankha.history('h1', series, from_ts, to_ts, resolution) h USING (bucket)
    WHERE d IS NULL OR h IS NULL OR (d.min, d.max, d.samples) IS DISTINCT FROM (h.min, h.max, h.samples)
       OR abs(d.avg - h.avg) > 1e-9
$$;
SELECT series, width, resolution,
       (SELECT count(*) FROM pankha.history('h1', series, :'base', :'base'::timestamptz + interval '4 hours', resolution)) AS buckets,
       pg_temp.differences(series, width, :'base', :'base'::timestamptz + interval '4 hours', resolution) AS differences
FROM (VALUES ('cpu_temp', interval '10 seconds', interval '10 seconds'),
             ('cpu_temp', '1 minute', '1 minute'),
             ('cpu_temp', '5 minutes', '5 minutes'),
             ('cpu_temp', '1 hour', '1 hour'),
             ('cpu_temp', '2 hours', '2 hours'),
             ('nvme_temp', '15 minutes', '15 minutes'),
             ('cpu_fan', '1 minute', '1 minute'),
             ('cpu_fan', '1 hour', '1 hour'),
             ('cpu_usage', '30 minutes', '30 minutes')) AS t(series, width, resolution);
-- Automatic: a day at 1 minute, two weeks at 1 hour.
SELECT count(*) AS buckets_of_a_day, sum(samples) AS samples,
       pg_temp.differences('cpu_temp', '1 minute', now() - interval '1 day', now(), NULL) AS differences
FROM pankha.history('h1', 'cpu_temp', now() - interval '1 day', now());
SELECT count(*) AS buckets_of_two_weeks, sum(samples) AS samples,
       pg_temp.differences('cpu_temp', '1 hour', now() - interval '14 days', now(), NULL) AS differences
FROM pankha.history('h1', 'cpu_temp', now() - interval '14 days', now());
-- A bucket is taken whole when the range starts inside it.
SELECT bucket - :'base'::timestamptz AS at, samples
FROM pankha.history('h1', 'cpu_temp', :'base'::timestamptz + interval '90 seconds',
                    :'base'::timestamptz + interval '3 minutes', '1 minute');
-- Nothing in the range: no rows.
SELECT count(*) AS rows_without_data FROM pankha.history('h1', 'cpu_temp', now() - interval '30 days', now() - interval '20 days');
SELECT count(*) AS rows_without_frames FROM pankha.history('h2', 'cpu_usage', now() - interval '1 hour', now());

-- The multi-series form: named series, or every sensor of the agent.
SELECT series_id, count(*) AS buckets, sum(samples) AS samples
FROM pankha.history('h1', ARRAY['cpu_temp', 'cpu_fan', 'memory_usage'], :'base', :'base'::timestamptz + interval '4 hours', '1 hour')
GROUP BY series_id ORDER BY series_id;
SELECT series_id, count(*) AS buckets
FROM pankha.history('h1', NULL::text[], :'base', :'base'::timestamptz + interval '4 hours', '1 hour')
GROUP BY series_id ORDER BY series_id;
-- An untyped literal means one series.
SELECT count(*) AS buckets FROM pankha.history('h1', 'cpu_temp', :'base', :'base'::timestamptz + interval '4 hours', '1 hour');

-- Bad arguments.
SELECT pg_temp.err(format('SELECT * FROM pankha.history(%L, %L, now() - interval ''1 hour'', now())', a, s))
FROM (VALUES ('nobody', 'cpu_temp'), (NULL, 'cpu_temp'), ('h1', 'gpu_temp'), ('h1', NULL), ('h2', 'cpu_temp')) AS t(a, s);
SELECT pg_temp.err(format('SELECT * FROM pankha.history(''h1'', ''cpu_temp'', %L::timestamptz, %L::timestamptz)', f, t))
FROM (VALUES ('2026-01-01 12:00+00'::timestamptz, '2026-01-01 12:00+00'::timestamptz),
             ('2026-01-01 12:00+00', '2026-01-01 11:00+00'), (NULL, '2026-01-01 12:00+00'),
             ('-infinity', '2026-01-01 12:00+00'), ('2026-01-01 12:00+00', 'infinity')) AS v(f, t);
SELECT r AS resolution,
       pg_temp.err(format('SELECT * FROM pankha.history(''h1'', ''cpu_temp'', now() - interval ''1 day'', now(), %L)', r))
FROM unnest('{0, -1 minute, 1 month, 90 seconds, 61 minutes, 1 year}'::interval[]) r;
SELECT pg_temp.err($$SELECT * FROM pankha.history('h1', ARRAY['cpu_temp', 'bogus'], now() - interval '1 hour', now())$$);
SELECT pg_temp.err($$SELECT * FROM pankha.history('nobody', NULL::text[], now() - interval '1 hour', now())$$);

SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
