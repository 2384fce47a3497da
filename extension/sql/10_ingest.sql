-- Ingest: pankha.ingest() and its batch forms, the catalog helper, day
-- partitions, payload decoding, liveness, and the views people query.

CREATE FUNCTION pankha.ingest(agent_id text, frame jsonb) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest';
COMMENT ON FUNCTION pankha.ingest(text, jsonb) IS
'Validate and store one data frame (the data object, or the whole {"type":"data"} message). Returns true when new, false when it was already stored; bad input raises an error naming the field.';

CREATE FUNCTION pankha.ingest(agent_id text, frame text) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest';
COMMENT ON FUNCTION pankha.ingest(text, text) IS
'pankha.ingest() for a frame given as JSON text, as it arrives on the wire; the faster form, since the text is parsed only once.';

CREATE FUNCTION pankha.ingest_batch(agent_id text, frames jsonb) RETURNS integer
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_batch';
COMMENT ON FUNCTION pankha.ingest_batch(text, jsonb) IS
'Store a JSON array of frames of one agent, all or nothing. Returns how many were new; an error names the frame, as in frames[2].sensors[0].id.';

CREATE FUNCTION pankha.ingest_batch(agent_id text, frames text) RETURNS integer
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_batch';
COMMENT ON FUNCTION pankha.ingest_batch(text, text) IS
'pankha.ingest_batch() for a JSON array of frames given as text.';

CREATE FUNCTION pankha.ingest_many(agent_ids text[], frames text[],
    OUT ord integer, OUT stored boolean, OUT sqlstate text, OUT message text,
    OUT detail text)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_many';
COMMENT ON FUNCTION pankha.ingest_many(text[], text[]) IS
'pankha.ingest_many() for frames given as JSON text, as they arrive on the wire (the bridge''s form).';

CREATE FUNCTION pankha.ingest_many(agent_ids text[], frames bytea[],
    OUT ord integer, OUT stored boolean, OUT sqlstate text, OUT message text,
    OUT detail text)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_many';
COMMENT ON FUNCTION pankha.ingest_many(text[], bytea[]) IS
'pankha.ingest_many() for frames given as the bytes received (JSON text in the database encoding): a frame with a NUL byte or invalid text is refused alone, where as text it would fail the whole call.';

CREATE FUNCTION pankha.ingest_many(agent_ids text[], frames jsonb[],
    OUT ord integer, OUT stored boolean, OUT sqlstate text, OUT message text,
    OUT detail text)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_many';
COMMENT ON FUNCTION pankha.ingest_many(text[], jsonb[]) IS
'Store frames of many agents in one call (the bridge''s form). One row per frame: stored, or the sqlstate, message and detail of why it was refused; stored is false with no sqlstate for a frame already stored.';

-- Frames more than 5 minutes ahead are stored near the server's time with
-- their own timestamp in agent_ts, which stays their identity: ingest looks
-- a re-sent one up in each partition's partial index on (agent_id,
-- agent_ts), which pankha.ensure_time_partition() creates (few rows: only
-- those frames are in it; per partition, like every key, for pg_dump).

-- Catalog: new sensors and fans get the next free slot of their agent.
-- Called by ingest only when its cache does not know an id (or a sensor's
-- limits changed), so it is off the per-frame path; ingest_many records
-- the ids of all its frames with one call (an element of the arrays per
-- id).  Returns the payload slots of all the ids given.  New
-- ids get the agent's next free slots in the order given; known sensors
-- take new metadata, and fields left out keep what was recorded (the rows
-- returned carry the metadata as recorded now).  An agent has 32767 sensor
-- slots and 255 fan slots for its lifetime: ids beyond them are not
-- recorded and get no row, and ingest refuses their frames.  One
-- catalog writer per agent at a time (advisory locks taken in key order, so
-- two writers never wait on each other in a circle): under the lock "not
-- recorded yet" stays true until we insert, and slots are never handed out
-- twice.
CREATE FUNCTION pankha._catalog_add(p_agent_ids text[], p_kinds "char"[], p_ids text[],
    p_types text[], p_max_temps real[], p_crit_temps real[])
RETURNS TABLE (agent_id text, kind "char", id text, slot smallint,
               type text, max_temp real, crit_temp real)
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('pankha catalog'), l.h)
      FROM (SELECT DISTINCT hashtext(a) AS h FROM unnest(p_agent_ids) AS a ORDER BY 1) l;

    UPDATE pankha.sensors s
       SET kind = coalesce(u.t, s.kind),
           max_temp = coalesce(u.mx, s.max_temp),
           crit_temp = coalesce(u.cr, s.crit_temp)
      FROM unnest(p_agent_ids, p_kinds, p_ids, p_types, p_max_temps, p_crit_temps) AS u(a, k, id, t, mx, cr)
     WHERE u.k = 's' AND s.agent_id = u.a AND s.sensor_id = u.id
       AND (s.kind, s.max_temp, s.crit_temp) IS DISTINCT FROM
           (coalesce(u.t, s.kind), coalesce(u.mx, s.max_temp), coalesce(u.cr, s.crit_temp));

    INSERT INTO pankha.sensors (agent_id, sensor_id, slot, kind, max_temp, crit_temp)
    SELECT n.a, n.id, (n.next + n.rank - 1)::smallint, n.t, n.mx, n.cr
      FROM (SELECT f.*, row_number() OVER (PARTITION BY f.a ORDER BY f.ord) AS rank,
                   coalesce((SELECT max(s.slot) + 1 FROM pankha.sensors s WHERE s.agent_id = f.a), 0) AS next
              FROM (SELECT DISTINCT ON (u.a, u.id) u.a, u.id, u.t, u.mx, u.cr, u.ord
                      FROM unnest(p_agent_ids, p_kinds, p_ids, p_types, p_max_temps, p_crit_temps)
                           WITH ORDINALITY AS u(a, k, id, t, mx, cr, ord)
                     WHERE u.k = 's' AND NOT EXISTS
                           (SELECT 1 FROM pankha.sensors s WHERE s.agent_id = u.a AND s.sensor_id = u.id)
                     ORDER BY u.a, u.id, u.ord) f) n
     WHERE n.next + n.rank - 1 < 32767;

    INSERT INTO pankha.fans (agent_id, fan_id, slot)
    SELECT n.a, n.id, (n.next + n.rank - 1)::smallint
      FROM (SELECT f.*, row_number() OVER (PARTITION BY f.a ORDER BY f.ord) AS rank,
                   coalesce((SELECT max(x.slot) + 1 FROM pankha.fans x WHERE x.agent_id = f.a), 0) AS next
              FROM (SELECT DISTINCT ON (u.a, u.id) u.a, u.id, u.ord
                      FROM unnest(p_agent_ids, p_kinds, p_ids) WITH ORDINALITY AS u(a, k, id, ord)
                     WHERE u.k = 'f' AND NOT EXISTS
                           (SELECT 1 FROM pankha.fans x WHERE x.agent_id = u.a AND x.fan_id = u.id)
                     ORDER BY u.a, u.id, u.ord) f) n
     WHERE n.next + n.rank - 1 < 255;

    SELECT s.agent_id, 's'::"char", s.sensor_id, s.slot, s.kind, s.max_temp, s.crit_temp
      FROM pankha.sensors s
      JOIN (SELECT DISTINCT u.a, u.id FROM unnest(p_agent_ids, p_kinds, p_ids) AS u(a, k, id)
             WHERE u.k = 's') w ON s.agent_id = w.a AND s.sensor_id = w.id
    UNION ALL
    SELECT x.agent_id, 'f'::"char", x.fan_id, x.slot, NULL, NULL, NULL
      FROM pankha.fans x
      JOIN (SELECT DISTINCT u.a, u.id FROM unnest(p_agent_ids, p_kinds, p_ids) AS u(a, k, id)
             WHERE u.k = 'f') w ON x.agent_id = w.a AND x.fan_id = w.id;
$$;
COMMENT ON FUNCTION pankha._catalog_add(text[], "char"[], text[], text[], real[], real[]) IS
'Internal: record sensors (kind s) and fans (kind f) of many agents and return their payload slots.';

-- Fan status words, stored in payloads as one-byte codes.  The protocol
-- does not close the list; a word not in this table is carried in the
-- payload of each frame that has it, so no agent can use the codes up for
-- the others (they were once added as agents sent them).
CREATE TABLE pankha.fan_statuses (
    code   smallint PRIMARY KEY CHECK (code BETWEEN 0 AND 254),
    status text NOT NULL UNIQUE CHECK (pankha.valid_id(status) AND octet_length(status) <= 32)
);
INSERT INTO pankha.fan_statuses (code, status)
SELECT ord - 1, word
FROM unnest(ARRAY['ok', 'warning', 'critical', 'error', 'failed', 'stalled', 'stopped',
                  'unknown', 'auto', 'manual', 'failsafe', 'emergency']) WITH ORDINALITY AS w(word, ord);
SELECT pg_catalog.pg_extension_config_dump('pankha.fan_statuses', 'WHERE code > 11');
COMMENT ON TABLE pankha.fan_statuses IS
'Fan status words with the one-byte code payloads store them as; other words are carried in the payload itself. Codes never change meaning.';

-- Deleting catalog rows (or agents) makes every backend drop its ingest cache.
CREATE FUNCTION pankha._catalog_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pankha_catalog_changed';
CREATE TRIGGER catalog_changed AFTER DELETE OR TRUNCATE ON pankha.agents
    FOR EACH STATEMENT EXECUTE FUNCTION pankha._catalog_changed();
CREATE TRIGGER catalog_changed AFTER DELETE OR TRUNCATE OR UPDATE OF slot, agent_id, sensor_id
    ON pankha.sensors FOR EACH STATEMENT EXECUTE FUNCTION pankha._catalog_changed();
CREATE TRIGGER catalog_changed AFTER DELETE OR TRUNCATE OR UPDATE OF slot, agent_id, fan_id
    ON pankha.fans FOR EACH STATEMENT EXECUTE FUNCTION pankha._catalog_changed();

-- Day partitions of pankha.readings, named readings_YYYYMMDD (UTC days).
CREATE FUNCTION pankha.ensure_partition(ts timestamptz) RETURNS regclass
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pankha.ensure_time_partition('readings', 'day', ts)
$$;
COMMENT ON FUNCTION pankha.ensure_partition(timestamptz) IS
'Create the day partition of pankha.readings that holds ts, unless it exists; returns it.';

CREATE FUNCTION pankha.ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(pankha.ensure_partition(d))::integer
    FROM generate_series(date_trunc('day', from_ts AT TIME ZONE 'UTC'),
                         to_ts AT TIME ZONE 'UTC', interval '1 day') AS g(d0),
         LATERAL (SELECT g.d0 AT TIME ZONE 'UTC') AS x(d)
$$;
COMMENT ON FUNCTION pankha.ensure_partitions(timestamptz, timestamptz) IS
'Make sure every day partition between the two times exists; returns how many days were checked.';

-- Liveness in shared memory, and its persistence.
CREATE FUNCTION pankha.agent_liveness(OUT agent_id text, OUT last_seen timestamptz,
    OUT last_frame timestamptz, OUT frames bigint)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_agent_liveness';
COMMENT ON FUNCTION pankha.agent_liveness() IS
'When each agent last sent a frame (server time and frame time), and frames since server start, from shared memory.';

CREATE FUNCTION pankha.flush_liveness() RETURNS integer
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_flush_liveness';
COMMENT ON FUNCTION pankha.flush_liveness() IS
'Persist changed last_seen times from shared memory into pankha.agents; returns the agents updated. The worker calls it.';

CREATE FUNCTION pankha.ingest_stats(OUT frames_stored bigint, OUT frames_rejected bigint,
    OUT agents_tracked bigint)
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_stats';
COMMENT ON FUNCTION pankha.ingest_stats() IS
'Frames stored and refused by ingest since the server started, and agents in the liveness table.';

-- One pass of the background worker's maintenance.  Each step runs in its
-- own subtransaction, so one that fails (and says why in the log) does not
-- hold the others back; it is tried again on the next pass.
CREATE FUNCTION pankha.maintain() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step text;
BEGIN
    FOREACH step IN ARRAY ARRAY[
        'SELECT count(*) FROM pankha.update_agent_status()',
        'SELECT pankha.expire_bridges()',
        'SELECT pankha.ensure_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.ensure_rollup_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.rollup()',
        'SELECT count(*) FROM pankha.drop_expired_partitions()',
        'SELECT pankha.prune_audit_log()',
        'SELECT pankha.requeue_commands()',
        'SELECT pankha.evaluate_alerts()',
        'SELECT pankha.prune_commands(pankha.setting_interval(''pankha.command_retention'', ''30 days''))',
        'SELECT pankha.prune_connections()',
        'SELECT pankha.prune_alerts()',
        'SELECT pankha.prune_agent_reports()',
        'SELECT pankha.prune_archived_partitions()']
    LOOP
        BEGIN
            EXECUTE step;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha maintenance step failed: %', SQLERRM
                USING DETAIL = format('The step was: %s', step),
                      HINT = 'It is tried again on the next pass.';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.maintain() IS
'One maintenance pass of the background worker: persist liveness and mark agents online or offline, close the connections of bridges that stopped beating, keep partitions ahead, roll up new frames, drop (and archive) partitions past retention, prune the audit log, expire and redeliver commands, judge alert rules, and prune finished commands, closed connections, resolved alerts, stale status reports and the record of dropped partitions past their pankha.*_retention.';

-- Payload decoding.
CREATE FUNCTION pankha.decode_temperatures(payload bytea, OUT slot smallint, OUT temperature real)
RETURNS SETOF record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE ROWS 32 AS 'MODULE_PATHNAME', 'pankha_decode_temperatures';
COMMENT ON FUNCTION pankha.decode_temperatures(bytea) IS
'The temperature (degrees Celsius, 0.01 resolution) in each sensor slot a payload carries.';

CREATE FUNCTION pankha.decode_fans(payload bytea, OUT slot smallint, OUT rpm integer,
    OUT speed real, OUT target_speed real, OUT status text)
RETURNS SETOF record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE ROWS 8 AS 'MODULE_PATHNAME', 'pankha_decode_fans';
COMMENT ON FUNCTION pankha.decode_fans(bytea) IS
'The values in each fan slot a payload carries (speeds in percent, 0.01 resolution).';

CREATE FUNCTION pankha.decode_health(payload bytea, OUT cpu_usage real, OUT memory_usage real,
    OUT agent_uptime bigint, OUT disk_usage real, OUT net_rx_bytes_per_sec double precision,
    OUT net_tx_bytes_per_sec double precision, OUT load1 real)
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pankha_decode_health';
COMMENT ON FUNCTION pankha.decode_health(bytea) IS
'The system-health values of a payload; null where the frame did not carry one.';

CREATE FUNCTION pankha.decode_seq(payload bytea) RETURNS bigint
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pankha_decode_seq';
COMMENT ON FUNCTION pankha.decode_seq(bytea) IS
'The seq the agent gave the frame, or null when it gave none.';

-- Views for people writing SQL.

-- An agent's newest frame, raw or compressed.  The newest is nearly always
-- raw; a compressed hour is unpacked only when it is newer than every raw
-- frame (an agent silent since before the cold age).
CREATE FUNCTION pankha.newest_frame(agent text,
    OUT ts timestamptz, OUT received_at timestamptz, OUT agent_id text, OUT payload bytea,
    OUT agent_ts timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE ROWS 1
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT f.ts, f.received_at, f.agent_id, f.payload, f.agent_ts
    FROM ((SELECT r.ts, r.received_at, r.agent_id, r.payload, r.agent_ts
           FROM pankha.readings r WHERE r.agent_id = newest_frame.agent
           ORDER BY r.ts DESC LIMIT 1)
          UNION ALL
          (SELECT u.ts, u.received_at, c.agent_id, u.payload, NULL::timestamptz
           FROM (SELECT c.* FROM pankha.frames_cold c WHERE c.agent_id = newest_frame.agent
                 ORDER BY c.hour DESC LIMIT 1) c
           CROSS JOIN LATERAL pankha.cold_frames(c.packed, c.last_ts, 'infinity') u
           WHERE c.last_ts > coalesce((SELECT max(r.ts) FROM pankha.readings r
                                       WHERE r.agent_id = newest_frame.agent), '-infinity'))) f
    ORDER BY f.ts DESC LIMIT 1;
END;
COMMENT ON FUNCTION pankha.newest_frame(text) IS
'The newest frame of an agent (none when it has none), raw or compressed, with the columns of pankha.readings.';

CREATE VIEW pankha.sensor_readings AS
SELECT r.agent_id, r.ts, s.sensor_id, d.temperature
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_temperatures(r.payload) d
JOIN pankha.sensors s ON s.agent_id = r.agent_id AND s.slot = d.slot;
COMMENT ON VIEW pankha.sensor_readings IS
'One row per temperature reading: agent, frame time, sensor id, degrees Celsius. Filter on agent_id and ts.';

CREATE VIEW pankha.fan_readings AS
SELECT r.agent_id, r.ts, f.fan_id, d.rpm, d.speed, d.target_speed, d.status
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_fans(r.payload) d
JOIN pankha.fans f ON f.agent_id = r.agent_id AND f.slot = d.slot;
COMMENT ON VIEW pankha.fan_readings IS
'One row per fan reading: rpm, speed and target speed (percent) and status. Filter on agent_id and ts.';

CREATE VIEW pankha.health_readings AS
SELECT r.agent_id, r.ts, h.*
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_health(r.payload) h;
COMMENT ON VIEW pankha.health_readings IS
'One row per frame with the system-health values (CPU, memory and disk in percent, uptime in seconds, network in bytes per second, load average).';

CREATE VIEW pankha.latest AS
SELECT a.agent_id, a.name, r.ts, r.received_at, pankha.decode_seq(r.payload) AS seq,
       (SELECT jsonb_object_agg(s.sensor_id, d.temperature)
        FROM pankha.decode_temperatures(r.payload) d
        JOIN pankha.sensors s ON s.agent_id = r.agent_id AND s.slot = d.slot) AS temperatures,
       (SELECT jsonb_object_agg(f.fan_id, jsonb_strip_nulls(jsonb_build_object(
                   'rpm', d.rpm, 'speed', d.speed, 'target_speed', d.target_speed, 'status', d.status)))
        FROM pankha.decode_fans(r.payload) d
        JOIN pankha.fans f ON f.agent_id = r.agent_id AND f.slot = d.slot) AS fans,
       h.cpu_usage, h.memory_usage, h.agent_uptime, h.disk_usage,
       h.net_rx_bytes_per_sec, h.net_tx_bytes_per_sec, h.load1
FROM pankha.agents a
CROSS JOIN LATERAL pankha.newest_frame(a.agent_id) r
CROSS JOIN LATERAL pankha.decode_health(r.payload) h;
COMMENT ON VIEW pankha.latest IS
'Each agent''s newest frame: temperatures and fans as JSON objects keyed by id, and the system-health values.';

-- An agent's frames go with it: a re-registered agent id starts a new
-- catalog, and old payloads must not be read through it.
CREATE FUNCTION pankha._forget_agent_readings() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pankha.readings WHERE agent_id = OLD.agent_id;
    DELETE FROM pankha.frames_cold WHERE agent_id = OLD.agent_id;
    RETURN OLD;
END
$$;
CREATE TRIGGER forget_readings AFTER DELETE ON pankha.agents
    FOR EACH ROW EXECUTE FUNCTION pankha._forget_agent_readings();

-- Privileges (issue 13).  Functions are executable by PUBLIC unless revoked,
-- so each one is either revoked here or deliberately left to PUBLIC: only
-- pure functions of their arguments (the payload decoders) are.  The
-- worker's own functions and the helpers of SECURITY DEFINER functions
-- (they run as the owner) are the owner's alone; flush_liveness above all,
-- which changes shared memory that the offline check trusts.  Readers get
-- agent_liveness and ingest_stats in 20_credentials.sql, once the roles exist.
REVOKE ALL ON FUNCTION pankha._catalog_add(text[], "char"[], text[], text[], real[], real[]),
                       pankha._catalog_changed(),
                       pankha._forget_agent_readings(),
                       pankha.ensure_partition(timestamptz),
                       pankha.ensure_partitions(timestamptz, timestamptz),
                       pankha.agent_liveness(),
                       pankha.flush_liveness(),
                       pankha.ingest_stats(),
                       pankha.maintain()
    FROM PUBLIC;
