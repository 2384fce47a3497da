-- Pankha extension: SQL for people — sensor history at the right
-- resolution, fleet and agent reports, and plain views with a time column
-- for Grafana.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- Which series of an agent a sensor, fan or health-metric name means.
CREATE FUNCTION pankha.find_series(agent_id text, series text, OUT kind "char", OUT slot smallint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF agent_id IS NULL OR NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = find_series.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
    SELECT 's', s.slot INTO kind, slot FROM pankha.sensors s
    WHERE s.agent_id = find_series.agent_id AND s.sensor_id = series;
    IF NOT FOUND THEN
        SELECT 'f', f.slot INTO kind, slot FROM pankha.fans f
        WHERE f.agent_id = find_series.agent_id AND f.fan_id = series;
    END IF;
    IF NOT FOUND THEN
        SELECT 'h', m.slot INTO kind, slot FROM pankha.health_metrics() m WHERE m.metric = series;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" has no sensor, fan or health metric "%"', agent_id, series
            USING ERRCODE = 'undefined_object',
                  HINT = 'Sensors and fans are known once the agent has reported them; health metrics are those of pankha.health_metrics().';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.find_series(text, text) IS
'The rollup kind and slot of an agent''s sensor (s), fan (f) or health metric (h) by name; raises undefined_object when there is none.';

-- The data a history query reads: raw, 1 minute or 1 hour.
CREATE FUNCTION pankha.history_source(from_ts timestamptz, to_ts timestamptz,
                                      resolution interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    span interval;
    seconds numeric;
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL OR from_ts >= to_ts OR NOT isfinite(from_ts) OR NOT isfinite(to_ts) THEN
        RAISE EXCEPTION 'invalid time range'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The range must start at a finite time before its end; it is %s to %s.',
                                  coalesce(from_ts::text, 'NULL'), coalesce(to_ts::text, 'NULL'));
    END IF;
    IF resolution IS NULL THEN
        span := to_ts - from_ts;
        RETURN CASE
            WHEN span <= interval '2 hours'
                 AND from_ts >= now() - pankha.setting_interval('pankha.raw_retention', '7 days') THEN 'raw'
            WHEN span <= interval '3 days' THEN '1 minute'
            ELSE '1 hour' END;
    END IF;
    seconds := extract(epoch FROM resolution);
    IF seconds <= 0 OR extract(month FROM resolution) <> 0 OR extract(year FROM resolution) <> 0 THEN
        RAISE EXCEPTION 'invalid resolution "%"', resolution
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'resolution is a positive interval in days, hours, minutes or seconds.';
    END IF;
    IF seconds < 60 THEN
        RETURN 'raw';
    ELSIF seconds < 3600 THEN
        IF seconds % 60 <> 0 THEN
            RAISE EXCEPTION 'invalid resolution "%"', resolution
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A resolution of a minute or more is a whole number of minutes.';
        END IF;
        RETURN '1 minute';
    ELSIF seconds % 3600 <> 0 THEN
        RAISE EXCEPTION 'invalid resolution "%"', resolution
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A resolution of an hour or more is a whole number of hours.';
    END IF;
    RETURN '1 hour';
END
$$;
COMMENT ON FUNCTION pankha.history_source(timestamptz, timestamptz, interval) IS
'Which data pankha.history() reads: raw frames (spans up to 2 hours within the raw retention, or resolutions under a minute), 1-minute rollups (spans up to 3 days, or whole minutes) or 1-hour rollups.';

CREATE FUNCTION pankha.history(agent_id text, series text, from_ts timestamptz, to_ts timestamptz,
                               resolution interval DEFAULT NULL)
RETURNS TABLE (bucket timestamptz, min real, max real, avg double precision, samples bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    source text := pankha.history_source(from_ts, to_ts, resolution);
    s record;
    width interval;
BEGIN
    s := pankha.find_series(agent_id, series);
    IF source = 'raw' THEN
        RETURN QUERY
        -- compressed hours give only this series' values (pankha.cold_series)
        SELECT CASE WHEN resolution IS NULL THEN r.ts
                    ELSE date_bin(resolution, r.ts, pankha.bucket_origin()) END AS b,
               min(r.value)::real, max(r.value)::real, avg(r.value), count(r.value)
        FROM (SELECT x.ts, v.value FROM pankha.readings x
              CROSS JOIN LATERAL pankha.payload_values(x.payload) v
              WHERE x.agent_id = history.agent_id AND x.ts >= from_ts AND x.ts < to_ts
                AND v.kind = s.kind AND v.slot = s.slot AND v.value IS NOT NULL
              UNION ALL
              SELECT u.ts, u.value FROM pankha.frames_cold c
              CROSS JOIN LATERAL pankha.cold_series(c.packed, from_ts, to_ts, s.kind, s.slot) u
              WHERE c.agent_id = history.agent_id
                AND c.hour > from_ts - interval '1 hour' AND c.hour < to_ts
                AND c.first_ts < to_ts AND c.last_ts >= from_ts) r
        GROUP BY b ORDER BY b;
        RETURN;
    END IF;

    width := source::interval;
    resolution := coalesce(resolution, width);
    IF source = '1 minute' THEN
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1m m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    ELSE
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1h m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.history(text, text, timestamptz, timestamptz, interval) IS
'History of one sensor (degrees Celsius), fan (rpm) or health metric of an agent between from_ts and to_ts: one row per bucket with min, max, avg and the number of samples.  Without a resolution the data is picked from the span: every raw frame up to 2 hours, 1-minute rollups up to 3 days, 1-hour rollups beyond; with one (e.g. ''5 minutes''), buckets of that width.  Rollup buckets overlapping the range are included whole.';

CREATE FUNCTION pankha.history(agent_id text, series text[], from_ts timestamptz, to_ts timestamptz,
                               resolution interval DEFAULT NULL)
RETURNS TABLE (series_id text, bucket timestamptz, min real, max real, avg double precision,
               samples bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    one text;
BEGIN
    PERFORM pankha.history_source(from_ts, to_ts, resolution);
    IF series IS NULL OR cardinality(series) = 0 THEN
        PERFORM pankha.find_series(agent_id, 'cpu_usage');     -- checks the agent
        series := ARRAY(SELECT s.sensor_id FROM pankha.sensors s
                        WHERE s.agent_id = history.agent_id ORDER BY s.sensor_id);
    END IF;
    FOREACH one IN ARRAY series LOOP
        RETURN QUERY SELECT one, h.* FROM pankha.history(agent_id, one, from_ts, to_ts, resolution) h;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.history(text, text[], timestamptz, timestamptz, interval) IS
'The multi-series form for charts: the history of several sensors, fans or health metrics of an agent (all its sensors when series is NULL or empty), one row per series and bucket, all at the same resolution.';

-- ---------------------------------------------------------------------
-- Reports
-- ---------------------------------------------------------------------

CREATE FUNCTION pankha.agent_report(agent text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (agent_id text, name text, status text, uptime_pct numeric,
               frames_received bigint, frames_expected bigint, gaps integer, longest_gap interval,
               hottest_sensors jsonb, fan_stall_minutes bigint, alerts bigint, commands jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    a pankha.agents;
    lo timestamptz;
    hi timestamptz;
    minutes numeric;
BEGIN
    PERFORM pankha.history_source(from_ts, to_ts, NULL);
    SELECT * INTO a FROM pankha.agents x WHERE x.agent_id = agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent USING ERRCODE = 'undefined_object';
    END IF;
    -- Whole minutes, from registration on.
    lo := date_bin('1 minute', greatest(from_ts, a.registered_at), pankha.bucket_origin());
    hi := least(to_ts, now());
    agent_report.agent_id := a.agent_id;
    name := a.name;
    status := a.status;
    IF hi <= lo THEN
        uptime_pct := NULL;
        frames_received := 0;
        frames_expected := 0;
        gaps := 0;
        hottest_sensors := '[]';
        fan_stall_minutes := 0;
    ELSE
        minutes := ceil(extract(epoch FROM hi - lo) / 60);
        SELECT round(100 * count(*) / minutes, 2), coalesce(sum(m.samples), 0)
        INTO uptime_pct, frames_received
        FROM pankha.rollup_1m m
        WHERE m.agent_id = a.agent_id AND m.kind = 'r' AND m.bucket >= lo AND m.bucket < hi;
        frames_expected := floor(extract(epoch FROM hi - lo) / pankha.update_interval(a.agent_id));

        -- Gaps: stretches of whole minutes without a frame.
        WITH present AS (
            SELECT m.bucket FROM pankha.rollup_1m m
            WHERE m.agent_id = a.agent_id AND m.kind = 'r' AND m.bucket >= lo AND m.bucket < hi
        ), bounds AS (
            SELECT lo - interval '1 minute' AS bucket UNION ALL SELECT bucket FROM present
            UNION ALL SELECT date_bin('1 minute', hi - interval '1 microsecond', pankha.bucket_origin())
                             + interval '1 minute'
        ), holes AS (
            SELECT lead(b.bucket) OVER (ORDER BY b.bucket) - b.bucket - interval '1 minute' AS hole
            FROM bounds b
        )
        SELECT count(*) FILTER (WHERE h.hole > interval '0'), max(h.hole) FILTER (WHERE h.hole > interval '0')
        INTO gaps, longest_gap FROM holes h;

        SELECT coalesce(jsonb_agg(jsonb_build_object('sensor_id', t.sensor_id, 'max', t.max,
                                                     'avg', round(t.avg::numeric, 2))
                                  ORDER BY t.max DESC, t.sensor_id), '[]')
        INTO hottest_sensors
        FROM (SELECT s.sensor_id, max(m.max) AS max, sum(m.sum) / sum(m.samples) AS avg
              FROM pankha.rollup_1m m
              JOIN pankha.sensors s ON s.agent_id = m.agent_id AND s.slot = m.slot
              WHERE m.agent_id = a.agent_id AND m.kind = 's' AND m.bucket >= lo AND m.bucket < hi
              GROUP BY s.sensor_id ORDER BY max(m.max) DESC, s.sensor_id LIMIT 3) t;

        SELECT count(*) INTO fan_stall_minutes FROM pankha.rollup_1m m
        WHERE m.agent_id = a.agent_id AND m.kind = 'f' AND m.bucket >= lo AND m.bucket < hi
          AND m.stalls > 0;
    END IF;

    SELECT count(*) INTO alerts FROM pankha.alerts x
    WHERE x.agent_id = a.agent_id AND x.fired_at >= from_ts AND x.fired_at < to_ts;

    SELECT coalesce(jsonb_object_agg(c.status, c.n), '{}') INTO commands
    FROM (SELECT q.status, count(*) AS n FROM pankha.commands q
          WHERE q.agent_id = a.agent_id AND q.created_at >= from_ts AND q.created_at < to_ts
          GROUP BY q.status) c;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION pankha.agent_report(text, timestamptz, timestamptz) IS
'One agent between from_ts and to_ts (counted from its registration and up to now, in whole minutes, from the 1-minute rollups): uptime_pct (minutes with a frame), frames received and expected at its update interval, gaps (stretches of minutes without a frame) and the longest, its three hottest sensors, minutes in which a fan stalled, alerts fired, and its commands by status.';

CREATE FUNCTION pankha.fleet_report(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (agent_id text, name text, status text, uptime_pct numeric,
               frames_received bigint, frames_expected bigint, gaps integer, longest_gap interval,
               hottest_sensors jsonb, fan_stall_minutes bigint, alerts bigint, commands jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
    SELECT r.* FROM pankha.agents a
    CROSS JOIN LATERAL pankha.agent_report(a.agent_id, from_ts, to_ts) r
    ORDER BY a.agent_id
$$;
COMMENT ON FUNCTION pankha.fleet_report(timestamptz, timestamptz) IS
'pankha.agent_report() for every registered agent, one row each.';

-- ---------------------------------------------------------------------
-- Views with a time column (for Grafana and other dashboards)
-- ---------------------------------------------------------------------

CREATE VIEW pankha.sensor_1m AS
SELECT m.bucket AS "time", m.agent_id, s.sensor_id, s.kind AS sensor_type,
       m.min, m.max, m.sum / m.samples AS avg, m.last, m.samples
FROM pankha.rollup_1m m
JOIN pankha.sensors s ON s.agent_id = m.agent_id AND s.slot = m.slot
WHERE m.kind = 's';
COMMENT ON VIEW pankha.sensor_1m IS
'Temperatures per agent, sensor and minute (degrees Celsius): min, max, avg, the last value and the number of samples.  Filter on "time" and agent_id.';

CREATE VIEW pankha.sensor_1h AS
SELECT m.bucket AS "time", m.agent_id, s.sensor_id, s.kind AS sensor_type,
       m.min, m.max, m.sum / m.samples AS avg, m.last, m.samples
FROM pankha.rollup_1h m
JOIN pankha.sensors s ON s.agent_id = m.agent_id AND s.slot = m.slot
WHERE m.kind = 's';
COMMENT ON VIEW pankha.sensor_1h IS
'Temperatures per agent, sensor and hour (degrees Celsius), as pankha.sensor_1m.';

CREATE VIEW pankha.fan_1m AS
SELECT m.bucket AS "time", m.agent_id, f.fan_id,
       m.min AS rpm_min, m.max AS rpm_max, m.sum / nullif(m.samples, 0) AS rpm_avg,
       m.speed_min, m.speed_max, m.speed_sum / nullif(m.speed_samples, 0) AS speed_avg,
       m.stalls, m.last_status
FROM pankha.rollup_1m m
JOIN pankha.fans f ON f.agent_id = m.agent_id AND f.slot = m.slot
WHERE m.kind = 'f';
COMMENT ON VIEW pankha.fan_1m IS
'Fans per agent and minute: rpm and speed (percent) min, max and avg, frames in which the fan stalled (0 rpm while driven), and the last status.';

CREATE VIEW pankha.fan_1h AS
SELECT m.bucket AS "time", m.agent_id, f.fan_id,
       m.min AS rpm_min, m.max AS rpm_max, m.sum / nullif(m.samples, 0) AS rpm_avg,
       m.speed_min, m.speed_max, m.speed_sum / nullif(m.speed_samples, 0) AS speed_avg,
       m.stalls, m.last_status
FROM pankha.rollup_1h m
JOIN pankha.fans f ON f.agent_id = m.agent_id AND f.slot = m.slot
WHERE m.kind = 'f';
COMMENT ON VIEW pankha.fan_1h IS
'Fans per agent and hour, as pankha.fan_1m.';

CREATE VIEW pankha.health_1m AS
SELECT m.bucket AS "time", m.agent_id, h.metric, m.min, m.max, m.sum / m.samples AS avg, m.last
FROM pankha.rollup_1m m
JOIN pankha.health_metrics() h ON h.slot = m.slot
WHERE m.kind = 'h';
COMMENT ON VIEW pankha.health_1m IS
'System health per agent, metric (see pankha.health_metrics()) and minute: min, max, avg and the last value.';

CREATE VIEW pankha.frames_1m AS
SELECT m.bucket AS "time", m.agent_id, m.samples AS frames
FROM pankha.rollup_1m m
WHERE m.kind = 'r';
COMMENT ON VIEW pankha.frames_1m IS
'Frames received per agent and minute (by frame time); a missing minute is a minute without a frame.';

CREATE VIEW pankha.alert_timeline AS
SELECT a.fired_at AS "time", a.resolved_at AS time_end, a.agent_id, a.target_id, a.rule_name,
       a.condition, a.threshold, a.severity, a.state, a.value, a.resolved_value,
       format('%s on %s%s: %s', a.rule_name, a.agent_id,
              coalesce('/' || a.target_id, ''), coalesce(a.value::text, a.condition)) AS text
FROM pankha.alerts a;
COMMENT ON VIEW pankha.alert_timeline IS
'Alerts as annotations: "time" when fired, time_end when resolved (NULL while firing), with a one-line text.';

CREATE VIEW pankha.agent_status AS
SELECT a.agent_id, a.name, a.status, a.last_seen, now() - a.last_seen AS silent_for,
       (SELECT count(*) FROM pankha.alerts x WHERE x.agent_id = a.agent_id AND x.state = 'firing') AS firing_alerts
FROM pankha.agents a;
COMMENT ON VIEW pankha.agent_status IS
'Each agent''s status (online or offline, kept by the worker and the bridges), when it was last seen, and its alerts still firing.';

CREATE VIEW pankha.worker_status AS
SELECT (SELECT a.pid FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'pankha worker') AS pid,
       (SELECT a.datname FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'pankha worker') AS database,
       s.last_pass, s.watermark, now() - s.watermark AS rollup_lag, s.last_hours,
       (SELECT count(*) FROM pankha.rollup_pending_hours) AS pending_hours,
       (SELECT count(*) FROM pankha.time_partitions t WHERE t.range_start > now()) AS partitions_ahead
FROM pankha.rollup_state s;
COMMENT ON VIEW pankha.worker_status IS
'The background worker at a glance: its process and database (NULL when it is not running), when it last rolled up and how far behind now its watermark is, hours waiting for their 1-hour rollup, and partitions made ahead.';

-- Privileges (issue 13): readers (and so the bridge) query history; the
-- reports read alerts and commands, which are the owner's.
REVOKE ALL ON FUNCTION pankha.find_series(text, text),
                       pankha.history_source(timestamptz, timestamptz, interval),
                       pankha.history(text, text, timestamptz, timestamptz, interval),
                       pankha.history(text, text[], timestamptz, timestamptz, interval),
                       pankha.agent_report(text, timestamptz, timestamptz),
                       pankha.fleet_report(timestamptz, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.find_series(text, text),
                          pankha.history_source(timestamptz, timestamptz, interval),
                          pankha.history(text, text, timestamptz, timestamptz, interval),
                          pankha.history(text, text[], timestamptz, timestamptz, interval)
    TO pankha_reader;
