-- Pankha extension: 1-minute and 1-hour rollups, kept incrementally.
--
-- Every frame row carries received_at, the server time it was stored.  The
-- rollup pass remembers how far it got (a watermark on received_at); each
-- pass finds the frames stored since, marks the (agent, minute) buckets
-- they fall in as dirty, whatever their age, and recomputes exactly those
-- buckets from the raw rows.  A late frame (an agent re-sending its buffer
-- after an outage) therefore refreshes the old bucket it belongs to, and a
-- pass costs in proportion to the frames stored since the last one, not to
-- the size of the table.  Hours touched are queued and recomputed from the
-- 1-minute rows.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- A pankha.* setting as an interval; the fallback when it is not defined
-- (the library not loaded in this session).
CREATE FUNCTION pankha.setting_interval(name text, fallback interval) RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(nullif(current_setting(name, true), '')::interval, fallback);
COMMENT ON FUNCTION pankha.setting_interval(text, interval) IS
'The value of a time setting such as pankha.raw_retention as an interval, or fallback when the setting is not defined in this session.';

-- Buckets are aligned on UTC midnight.
CREATE FUNCTION pankha.bucket_origin() RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '2001-01-01 00:00:00+00'::timestamptz;
COMMENT ON FUNCTION pankha.bucket_origin() IS
'The origin history buckets are aligned to (a UTC midnight).';

-- The system-health values a frame may carry, with their rollup slots.
CREATE FUNCTION pankha.health_metrics(OUT slot smallint, OUT metric text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 6
AS $$
    VALUES (0::smallint, 'cpu_usage'), (1, 'memory_usage'), (2, 'disk_usage'), (3, 'load1'),
           (4, 'net_rx_bytes_per_sec'), (5, 'net_tx_bytes_per_sec')
$$;
COMMENT ON FUNCTION pankha.health_metrics() IS
'The system-health metrics kept in the rollups (kind h) and their slots; pankha.history() accepts these names.';

-- Every value of a payload as (kind, slot, value, speed, status): kind s
-- is a sensor (value = degrees Celsius), f a fan (value = rpm, speed in
-- percent), h a health metric, and r one row per frame, so that rollups
-- also count frames.
CREATE FUNCTION pankha.payload_values(payload bytea, OUT kind "char", OUT slot smallint,
    OUT value double precision, OUT speed double precision, OUT status text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 40
AS $$
    SELECT 'r'::"char", 0::smallint, 1::double precision, NULL::double precision, NULL::text
    UNION ALL
    SELECT 's', t.slot, t.temperature, NULL, NULL FROM pankha.decode_temperatures(payload) t
    UNION ALL
    SELECT 'f', f.slot, f.rpm, f.speed, f.status FROM pankha.decode_fans(payload) f
    UNION ALL
    SELECT 'h', v.slot, v.value, NULL, NULL
    FROM pankha.decode_health(payload) h,
         LATERAL (VALUES (0::smallint, h.cpu_usage::double precision), (1, h.memory_usage),
                         (2, h.disk_usage), (3, h.load1), (4, h.net_rx_bytes_per_sec),
                         (5, h.net_tx_bytes_per_sec)) AS v(slot, value)
    WHERE v.value IS NOT NULL
$$;
COMMENT ON FUNCTION pankha.payload_values(bytea) IS
'Every value of a payload, one row each: kind s (sensor, degrees Celsius), f (fan: value is rpm, speed in percent, status), h (health metric, see pankha.health_metrics()) and one row of kind r per frame.';

-- The two rollup tiers share one shape.  value_* aggregate the main value
-- (temperature, rpm, health metric); speed_* a fan's speed; stalls counts
-- a fan's frames that reported 0 rpm while driven above 0 % (or the status
-- stalled); last_* are the values of the newest frame in the bucket.
CREATE TABLE pankha.rollup_1m (
    agent_id      text NOT NULL,
    bucket        timestamptz NOT NULL,
    kind          "char" NOT NULL CHECK (kind IN ('s', 'f', 'h', 'r')),
    slot          smallint NOT NULL,
    samples       integer NOT NULL,
    min           real,
    max           real,
    sum           double precision,
    last          real,
    last_ts       timestamptz NOT NULL,
    speed_samples integer NOT NULL DEFAULT 0,
    speed_min     real,
    speed_max     real,
    speed_sum     double precision,
    stalls        integer NOT NULL DEFAULT 0,
    last_status   text
) PARTITION BY RANGE (bucket);
COMMENT ON TABLE pankha.rollup_1m IS
'1-minute aggregates per agent and sensor (kind s), fan (f), health metric (h) and frame count (r), partitioned by UTC day.  samples counts the values, sum/samples is the average; kept by the background worker, read them through pankha.history() or the *_1m views.';

-- Like pankha.readings, both tiers keep their keys on the partitions only
-- (see the comment there): pankha.ensure_time_partition() gives each the
-- primary key (agent_id, bucket, kind, slot).
CREATE TABLE pankha.rollup_1h (LIKE pankha.rollup_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (bucket);
COMMENT ON TABLE pankha.rollup_1h IS
'1-hour aggregates, the same columns as pankha.rollup_1m, computed from it and partitioned by UTC month.';

-- How far the rollup pass has read, and the hours waiting to be redone.
CREATE TABLE pankha.rollup_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark  timestamptz NOT NULL DEFAULT '-infinity',
    last_pass  timestamptz,
    last_hours timestamptz
);
INSERT INTO pankha.rollup_state DEFAULT VALUES;
COMMENT ON TABLE pankha.rollup_state IS
'The rollup watermark: frames with received_at before it are in the 1-minute rollups.  last_pass and last_hours say when the minute and hour tiers last ran.';

CREATE TABLE pankha.rollup_pending_hours (
    agent_id text NOT NULL,
    bucket   timestamptz NOT NULL,
    PRIMARY KEY (agent_id, bucket)
);
COMMENT ON TABLE pankha.rollup_pending_hours IS
'Hours whose 1-minute rollups changed and whose 1-hour rollup is still to be recomputed.';

-- Time partitions of readings and the rollup tables: name_YYYYMMDD for a
-- day, name_YYYYMM for a month (UTC).  Each partition is created with its
-- own keys, the parents having none (see pankha.readings): the primary key,
-- and for readings a BRIN index on received_at, by which the rollup pass
-- finds new frames (received_at follows the insert order, so BRIN suits
-- it and costs ingest next to nothing), and the partial index of frames
-- from agents whose clock is ahead (see pankha.ingest_many).  The names are the ones PostgreSQL
-- gives keys inherited from a parent, as 0.1.0 had them.
CREATE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamp := date_trunc(unit, ts AT TIME ZONE 'UTC');
    hi timestamp := lo + ('1 ' || unit)::interval;
    name text := parent || '_' || to_char(lo, CASE unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
    rel regclass := to_regclass(format('pankha.%I', name));
BEGIN
    IF unit NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'invalid partition unit "%"', unit
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The unit is day or month.';
    END IF;
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pankha partitions'));
    -- Read pg_class itself, not the cache: an advisory lock does not bring
    -- in the invalidations of a partition another session just created.
    SELECT c.oid::regclass INTO rel FROM pg_catalog.pg_class c
    WHERE c.relname = name AND c.relnamespace = 'pankha'::regnamespace;
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE pankha.%I PARTITION OF pankha.%I FOR VALUES FROM (%L) TO (%L)',
                       name, parent, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        IF parent = 'readings' THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)',
                           name, name || '_pkey');
            EXECUTE format('CREATE INDEX %I ON pankha.%I USING brin (received_at) WITH (pages_per_range = 16, autosummarize = on)',
                           name || '_received_at_idx', name);
            EXECUTE format('CREATE INDEX %I ON pankha.%I (agent_id, agent_ts) WHERE agent_ts IS NOT NULL',
                           name || '_agent_id_agent_ts_idx', name);
        ELSIF parent IN ('rollup_1m', 'rollup_1h') THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, bucket, kind, slot)',
                           name, name || '_pkey');
        END IF;
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;
COMMENT ON FUNCTION pankha.ensure_time_partition(text, text, timestamptz) IS
'Create the day or month partition of a pankha table partitioned by time that holds ts, unless it exists; returns it.';

CREATE FUNCTION pankha.ensure_rollup_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d timestamp;
    n integer := 0;
BEGIN
    -- Stepping in UTC timestamps, so daylight-saving days are whole days.
    FOR d IN SELECT generate_series(date_trunc('day', from_ts AT TIME ZONE 'UTC'),
                                    to_ts AT TIME ZONE 'UTC', interval '1 day') LOOP
        PERFORM pankha.ensure_time_partition('rollup_1m', 'day', d AT TIME ZONE 'UTC');
        n := n + 1;
    END LOOP;
    FOR d IN SELECT generate_series(date_trunc('month', from_ts AT TIME ZONE 'UTC'),
                                    to_ts AT TIME ZONE 'UTC', interval '1 month') LOOP
        PERFORM pankha.ensure_time_partition('rollup_1h', 'month', d AT TIME ZONE 'UTC');
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.ensure_rollup_partitions(timestamptz, timestamptz) IS
'Make sure the rollup partitions (days of rollup_1m, months of rollup_1h) between the two times exist; returns the days checked.';

-- The newest received_at below which every frame is committed and visible.
-- Ingest stamps received_at with the clock when it starts, so a frame still
-- in flight belongs to a client running a statement, or to a transaction
-- that has written; the bound stops at the oldest such transaction (or
-- prepared transaction), with a second of margin.  A long statement only
-- delays the rollups; it never makes them skip a frame.
CREATE FUNCTION pankha.rollup_horizon() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(clock_timestamp() - interval '1 second',
                 (SELECT min(a.xact_start) FROM pg_catalog.pg_stat_activity a
                  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                    AND a.xact_start IS NOT NULL
                    AND ((a.state = 'active' AND a.backend_type = 'client backend')
                         OR a.backend_xid IS NOT NULL)),
                 (SELECT min(p.prepared) FROM pg_catalog.pg_prepared_xacts p
                  WHERE p.database = current_database()))
$$;
COMMENT ON FUNCTION pankha.rollup_horizon() IS
'Internal: the received_at up to which frames are certainly committed, the rollup pass''s upper bound.';

-- Recompute the 1-minute buckets of the given stretches of time, one per
-- agent_ids[i], from_ts[i] (a whole minute) and to_ts[i] (exclusive), from
-- the raw rows.  Stretches rather than single buckets, so that each is one
-- index range scan whatever the number of minutes in it.
CREATE FUNCTION pankha.rollup_minutes(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    -- Replace rather than upsert: ON CONFLICT needs a key on the parent,
    -- which the partitioned tables do not have (see pankha.readings).  One
    -- rollup pass runs at a time (pankha.rollup() locks rollup_state), so
    -- nobody else writes these buckets in between.
    DELETE FROM pankha.rollup_1m m
     USING unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
     WHERE m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi;
    INSERT INTO pankha.rollup_1m
    SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, v.kind, v.slot,
           count(v.value), min(v.value), max(v.value), sum(v.value),
           (array_agg(v.value ORDER BY r.ts DESC))[1], max(r.ts),
           count(v.speed), min(v.speed), max(v.speed), sum(v.speed),
           count(*) FILTER (WHERE v.kind = 'f' AND ((v.value = 0 AND v.speed > 0) OR v.status = 'stalled')),
           (array_agg(v.status ORDER BY r.ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    CROSS JOIN LATERAL (
        SELECT x.agent_id, x.ts, x.payload FROM pankha.readings x
        WHERE x.agent_id = d.agent_id AND x.ts >= d.lo AND x.ts < d.hi
        UNION ALL
        SELECT c.agent_id, u.ts, u.payload FROM pankha.frames_cold c
        CROSS JOIN LATERAL pankha.cold_frames(c.packed, d.lo, d.hi) u
        WHERE c.agent_id = d.agent_id AND c.hour > d.lo - interval '1 hour' AND c.hour < d.hi) r
    CROSS JOIN LATERAL pankha.payload_values(r.payload) v
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) IS
'Internal: recompute the 1-minute rollups of the given stretches (agent, from, to; whole minutes) from the raw and compressed frames; returns the rows written.';

-- Recompute the 1-hour buckets of the given stretches (whole hours) from
-- the 1-minute rollups.
CREATE FUNCTION pankha.rollup_hours(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    -- Replaced, not upserted, as in pankha.rollup_minutes().
    DELETE FROM pankha.rollup_1h h
     USING unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
     WHERE h.agent_id = d.agent_id AND h.bucket >= d.lo AND h.bucket < d.hi;
    INSERT INTO pankha.rollup_1h
    SELECT m.agent_id, date_bin('1 hour', m.bucket, pankha.bucket_origin()) AS bucket, m.kind, m.slot,
           sum(m.samples), min(m.min), max(m.max), sum(m.sum),
           (array_agg(m.last ORDER BY m.last_ts DESC))[1], max(m.last_ts),
           sum(m.speed_samples), min(m.speed_min), max(m.speed_max), sum(m.speed_sum),
           sum(m.stalls), (array_agg(m.last_status ORDER BY m.last_ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    JOIN pankha.rollup_1m m ON m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_hours(text[], timestamptz[], timestamptz[]) IS
'Internal: recompute the 1-hour rollups of the given stretches (agent, from, to; whole hours) from pankha.rollup_1m; returns the rows written.';

-- One rollup pass.  force_hours recomputes the queued hours now instead of
-- waiting for pankha.rollup_hour_delay.
CREATE FUNCTION pankha.rollup(force_hours boolean DEFAULT false,
    OUT frames bigint, OUT minutes bigint, OUT hours bigint, OUT watermark timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st pankha.rollup_state;
    horizon timestamptz;
    agent_ids text[];
    los timestamptz[];
    his timestamptz[];
    lo timestamptz;
    hi timestamptz;
BEGIN
    -- One rollup pass at a time; a second caller waits for the first.
    SELECT * INTO st FROM pankha.rollup_state FOR UPDATE;
    horizon := pankha.rollup_horizon();
    -- The clock went back since the last pass: frames stored meanwhile got
    -- received_at values below the watermark, so read that stretch again.
    IF st.last_pass > now() THEN
        RAISE LOG 'pankha: the clock went back by %; rolling up again from % on',
            st.last_pass - now(), st.watermark - (st.last_pass - now()) - interval '1 second';
        st.watermark := st.watermark - (st.last_pass - now()) - interval '1 second';
    END IF;
    frames := 0;
    minutes := 0;
    hours := 0;

    IF horizon > st.watermark THEN
        -- The minutes touched by frames stored since the watermark, merged
        -- into stretches of consecutive minutes per agent.
        WITH touched AS (
            SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, count(*) AS n
            FROM (SELECT r.agent_id, r.ts FROM pankha.readings r
                  WHERE r.received_at >= st.watermark AND r.received_at < horizon
                  UNION ALL
                  -- compressed frames are rolled up before they are packed:
                  -- found here only when the watermark is set back (a rebuild)
                  SELECT c.agent_id, u.ts FROM pankha.frames_cold c
                  CROSS JOIN LATERAL pankha.cold_frames(c.packed) u
                  WHERE c.received_max >= st.watermark
                    AND u.received_at >= st.watermark AND u.received_at < horizon) r
            GROUP BY 1, 2
        ), stretches AS (
            SELECT t.agent_id, min(t.bucket) AS lo, max(t.bucket) + interval '1 minute' AS hi, sum(t.n) AS n
            FROM (SELECT t.*, t.bucket - interval '1 minute' * row_number() OVER (PARTITION BY t.agent_id ORDER BY t.bucket) AS island
                  FROM touched t) t
            GROUP BY t.agent_id, t.island
        )
        SELECT array_agg(x.agent_id), array_agg(x.lo), array_agg(x.hi), min(x.lo), max(x.hi),
               coalesce(sum(x.n), 0)
        INTO agent_ids, los, his, lo, hi, frames
        FROM stretches x;
        IF agent_ids IS NOT NULL THEN
            PERFORM pankha.ensure_rollup_partitions(lo, hi);
            minutes := pankha.rollup_minutes(agent_ids, los, his);
            INSERT INTO pankha.rollup_pending_hours
            SELECT DISTINCT u.agent_id, h
            FROM unnest(agent_ids, los, his) AS u(agent_id, lo, hi),
                 generate_series(date_bin('1 hour', u.lo, pankha.bucket_origin()),
                                 u.hi - interval '1 microsecond', interval '1 hour') AS h
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE pankha.rollup_state SET watermark = horizon, last_pass = now();
        st.watermark := horizon;
    END IF;

    IF force_hours OR st.last_hours IS NULL
       OR st.last_hours <= now() - pankha.setting_interval('pankha.rollup_hour_delay', '1 minute') THEN
        WITH done AS (
            DELETE FROM pankha.rollup_pending_hours RETURNING agent_id, bucket
        ), stretches AS (
            SELECT d.agent_id, min(d.bucket) AS lo, max(d.bucket) + interval '1 hour' AS hi
            FROM (SELECT d.*, d.bucket - interval '1 hour' * row_number() OVER (PARTITION BY d.agent_id ORDER BY d.bucket) AS island
                  FROM done d) d
            GROUP BY d.agent_id, d.island
        )
        SELECT array_agg(x.agent_id), array_agg(x.lo), array_agg(x.hi) INTO agent_ids, los, his
        FROM stretches x;
        IF agent_ids IS NOT NULL THEN
            hours := pankha.rollup_hours(agent_ids, los, his);
        END IF;
        UPDATE pankha.rollup_state SET last_hours = now();
    END IF;
    watermark := st.watermark;
END
$$;
COMMENT ON FUNCTION pankha.rollup(boolean) IS
'One incremental rollup pass (the worker runs it): recompute the 1-minute buckets touched by frames stored since the watermark, late frames included, and the queued hours when pankha.rollup_hour_delay has passed (or force_hours).  Returns the frames read, rows written and the new watermark.';

-- Start over: rebuild every rollup from the raw rows still kept.
CREATE FUNCTION pankha.rollup_rebuild() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM pankha.rollup_state FOR UPDATE;
    UPDATE pankha.rollup_state SET watermark = '-infinity';
    SELECT (pankha.rollup(true)).frames INTO n;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_rebuild() IS
'Recompute the rollups of every frame still kept, raw or compressed (e.g. after restoring raw data); returns the frames read.  Rollups of older, dropped raw data are kept.';

-- Privileges (issue 13): the worker's functions are the owner's alone;
-- readers read the rollups (pankha.history does, for the bridge too).
REVOKE ALL ON FUNCTION pankha.ensure_time_partition(text, text, timestamptz),
                       pankha.ensure_rollup_partitions(timestamptz, timestamptz),
                       pankha.rollup_horizon(),
                       pankha.rollup_minutes(text[], timestamptz[], timestamptz[]),
                       pankha.rollup_hours(text[], timestamptz[], timestamptz[]),
                       pankha.rollup(boolean),
                       pankha.rollup_rebuild()
    FROM PUBLIC;
GRANT SELECT ON pankha.rollup_1m, pankha.rollup_1h TO pankha_reader;
