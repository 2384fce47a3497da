-- Reports and the views for dashboards: uptime, frames received against
-- expected, gaps, hottest sensors, fan stalls, alerts and commands, from
-- frames with known holes; and a comment on everything people query.
\i sql/worker_helpers.psql
SELECT pg_temp.base(3) AS base \gset

SELECT pankha.register_agent(a, 'Report ' || a) IS NOT NULL AS registered
FROM unnest('{p1,p2,p3}'::text[]) a;
UPDATE pankha.agents SET registered_at = :'base'::timestamptz - interval '1 day';
-- p1: an hour every 10 s, silent in minutes 20-29 and 45-47.
SELECT pankha.ingest_batch('p1', (SELECT jsonb_agg(f) FROM jsonb_array_elements(pg_temp.frames('p1', :'base', 10, 360)) WITH ORDINALITY AS x(f, n)
                                  WHERE (n - 1) / 6 NOT BETWEEN 20 AND 29 AND (n - 1) / 6 NOT BETWEEN 45 AND 47)) AS p1_frames;
-- p2: the first half hour every 30 s; p3 never sends.
SELECT pankha.ingest_batch('p2', pg_temp.frames('p2', :'base', 30, 60)) AS p2_frames;
INSERT INTO pankha.alerts (rule_name, agent_id, condition, threshold, severity, state, value, fired_at)
VALUES ('hot', 'p1', 'temperature_above', 50, 'warning', 'firing', 51, :'base'::timestamptz + interval '5 minutes'),
       ('hot', 'p1', 'temperature_above', 50, 'warning', 'firing', 52, :'base'::timestamptz + interval '2 hours');
SELECT pg_sleep(1.1);
SELECT frames FROM pankha.rollup(true);

SELECT * FROM pankha.agent_report('p1', :'base', :'base'::timestamptz + interval '1 hour');
SELECT * FROM pankha.fleet_report(:'base', :'base'::timestamptz + interval '1 hour');
-- Frames counted against the raw table.
SELECT agent_id, count(*) AS raw_frames FROM pankha.readings
WHERE ts >= :'base' AND ts < :'base'::timestamptz + interval '1 hour' GROUP BY agent_id ORDER BY agent_id;
-- The report stops at now and starts at registration.
UPDATE pankha.agents SET registered_at = :'base'::timestamptz + interval '30 minutes' WHERE agent_id = 'p3';
SELECT agent_id, uptime_pct, frames_expected = floor(extract(epoch FROM now() - (:'base'::timestamptz + interval '30 minutes')) / 3) AS expected_since_registration,
       gaps, longest_gap >= now() - (:'base'::timestamptz + interval '31 minutes') AS silent_since_registration
FROM pankha.agent_report('p3', :'base', now() + interval '1 day');
SELECT agent_id, uptime_pct, frames_received, frames_expected
FROM pankha.agent_report('p3', :'base'::timestamptz - interval '1 hour', :'base');

-- Bad arguments.
SELECT pg_temp.err($$SELECT * FROM pankha.agent_report('nobody', now() - interval '1 hour', now())$$);
SELECT pg_temp.err($$SELECT * FROM pankha.agent_report('p1', '2026-01-02', '2026-01-01')$$);
SELECT pg_temp.err($$SELECT * FROM pankha.fleet_report(NULL, '2026-01-01')$$);

-- The views for Grafana: a "time" column, and rows for the data above.
CREATE FUNCTION pg_temp.rows_of(rel text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM pankha.%I', rel) INTO n;
    RETURN n;
END
$$;
SELECT c.relname AS view, a.attname AS first_column, pg_temp.rows_of(c.relname) AS rows
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
WHERE c.relnamespace = 'pankha'::regnamespace AND c.relkind = 'v'
  AND c.relname IN ('sensor_1m', 'sensor_1h', 'fan_1m', 'fan_1h', 'health_1m', 'frames_1m', 'alert_timeline')
ORDER BY c.relname;
SELECT agent_id, status, firing_alerts FROM pankha.agent_status ORDER BY agent_id;
SELECT "time" - :'base'::timestamptz AS at, time_end, text FROM pankha.alert_timeline ORDER BY "time";

-- The worker at a glance (here it runs in another database).
SELECT pid IS NOT NULL AS worker_running, database, last_pass IS NOT NULL AS rolled_up,
       rollup_lag < interval '1 hour' AS lag_small, pending_hours
FROM pankha.worker_status;

-- Everything of this part that people touch carries a comment.
SELECT kind, name FROM (
    SELECT 'relation' AS kind, c.relname::text AS name, obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c
    WHERE c.relnamespace = 'pankha'::regnamespace AND c.relkind IN ('r', 'p', 'v')
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
    FROM pg_proc p WHERE p.pronamespace = 'pankha'::regnamespace) o
WHERE comment IS NULL
  AND name ~ '(rollup|history|report|alert|_1m|_1h|partition|retention|liveness|agent_status|offline|update_interval|health_metrics|payload_values|setting_interval|series|maintain|requeue|bucket_origin|worker)'
  AND name !~ '_[0-9]{6,8}$'
ORDER BY 1, 2;

SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
