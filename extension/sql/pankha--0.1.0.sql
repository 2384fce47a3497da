-- Pankha extension: schema, agents, the sensor/fan catalog and the compact
-- readings table.  Assembled with the other numbered parts into
-- pankha--<version>.sql by the Makefile.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- An identifier as agents send them: 1..64 bytes, no control characters.
CREATE FUNCTION pankha.valid_id(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN octet_length(id) BETWEEN 1 AND 64 AND id !~ '[[:cntrl:]]';
COMMENT ON FUNCTION pankha.valid_id(text) IS
'True when an agent, sensor or fan id is 1 to 64 bytes long without control characters.';

CREATE TABLE pankha.agents (
    agent_id      text PRIMARY KEY CHECK (pankha.valid_id(agent_id)),
    name          text NOT NULL,
    hostname      text,
    capabilities  jsonb NOT NULL DEFAULT '{}',
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz,
    status        text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline'))
);
COMMENT ON TABLE pankha.agents IS
'Registered agents. last_seen is persisted from shared memory by the background worker; pankha.agent_liveness() has the live value.';

-- The catalog: every sensor and fan an agent has ever reported, with the
-- slot its value occupies in the compact payload of pankha.readings.  Slots
-- are assigned once and never reused, so old frames stay decodable.
CREATE TABLE pankha.sensors (
    agent_id   text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    sensor_id  text NOT NULL CHECK (pankha.valid_id(sensor_id)),
    slot       smallint NOT NULL CHECK (slot >= 0),
    kind       text,
    label      text,
    max_temp   real,
    crit_temp  real,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, sensor_id),
    UNIQUE (agent_id, slot)
);
COMMENT ON TABLE pankha.sensors IS
'Temperature sensors per agent, recorded by pankha.ingest() the first time a frame carries them.';

CREATE TABLE pankha.fans (
    agent_id       text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    fan_id         text NOT NULL CHECK (pankha.valid_id(fan_id)),
    slot           smallint NOT NULL CHECK (slot >= 0),
    label          text,
    min_speed      real NOT NULL DEFAULT 0 CHECK (min_speed BETWEEN 0 AND 100),
    max_speed      real NOT NULL DEFAULT 100 CHECK (max_speed BETWEEN 0 AND 100),
    emergency_temp real CHECK (emergency_temp BETWEEN 0 AND 250),
    first_seen     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, fan_id),
    UNIQUE (agent_id, slot),
    CHECK (min_speed <= max_speed)
);
COMMENT ON TABLE pankha.fans IS
'Fans per agent with their safety limits (percent of full speed; emergency_temp in degrees Celsius).';

-- One row per frame.  The values live in payload, a compact binary
-- encoding decoded by pankha.decode_*(); the views below unnest it.
CREATE TABLE pankha.readings (
    -- fixed-width columns first, so no padding is needed between them
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    agent_id    text NOT NULL,
    payload     bytea NOT NULL,
    agent_ts    timestamptz,
    PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE pankha.readings IS
'One row per data frame, partitioned by day on ts (the agent clock).  agent_ts is set only when the agent clock was more than 5 minutes ahead: ts is then the receive time.';
COMMENT ON COLUMN pankha.readings.payload IS
'The frame''s seq, sensor, fan and system-health values, encoded compactly; read them through pankha.sensor_readings, pankha.fan_readings and pankha.health_readings.';
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

CREATE FUNCTION pankha.ingest_many(agent_ids text[], frames jsonb[],
    OUT ord integer, OUT stored boolean, OUT sqlstate text, OUT message text,
    OUT detail text)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_many';
COMMENT ON FUNCTION pankha.ingest_many(text[], jsonb[]) IS
'Store frames of many agents in one call (the bridge''s form). One row per frame: stored, or the sqlstate, message and detail of why it was refused; stored is false with no sqlstate for a frame already stored.';

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
-- does not close the list, so new words are added as agents send them.
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
'The fan status words agents have sent, with the one-byte code payloads store them as. Codes never change meaning.';

CREATE FUNCTION pankha._fan_status_code(p_status text) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    result smallint;
BEGIN
    SELECT code INTO result FROM pankha.fan_statuses WHERE status = p_status;
    IF FOUND THEN
        RETURN result;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pankha fan statuses'));
    SELECT code INTO result FROM pankha.fan_statuses WHERE status = p_status;
    IF FOUND THEN
        RETURN result;
    END IF;
    SELECT coalesce(max(code) + 1, 0) INTO result FROM pankha.fan_statuses;
    IF result > 254 THEN
        RETURN NULL;            -- full: the caller refuses the frame
    END IF;
    INSERT INTO pankha.fan_statuses (code, status) VALUES (result, p_status);
    RETURN result;
END
$$;
COMMENT ON FUNCTION pankha._fan_status_code(text) IS
'Internal: the code of a fan status word, added to pankha.fan_statuses when new; null when all 255 codes are taken.';

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
LANGUAGE sql AS $$
    SELECT pankha.ensure_time_partition('readings', 'day', ts)
$$;
COMMENT ON FUNCTION pankha.ensure_partition(timestamptz) IS
'Create the day partition of pankha.readings that holds ts, unless it exists; returns it.';

CREATE FUNCTION pankha.ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
LANGUAGE sql AS $$
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
LANGUAGE plpgsql AS $$
DECLARE
    step text;
BEGIN
    FOREACH step IN ARRAY ARRAY[
        'SELECT count(*) FROM pankha.update_agent_status()',
        'SELECT pankha.ensure_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.ensure_rollup_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.rollup()',
        'SELECT count(*) FROM pankha.drop_expired_partitions()',
        'SELECT pankha.prune_audit_log()',
        'SELECT pankha.requeue_commands()',
        'SELECT pankha.evaluate_alerts()']
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
'One maintenance pass of the background worker: persist liveness and mark agents online or offline, keep partitions ahead, roll up new frames, drop (and archive) partitions past retention, prune the audit log, expire and redeliver commands, and judge alert rules.';

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
CREATE VIEW pankha.sensor_readings AS
SELECT r.agent_id, r.ts, s.sensor_id, d.temperature
FROM pankha.readings r
CROSS JOIN LATERAL pankha.decode_temperatures(r.payload) d
JOIN pankha.sensors s ON s.agent_id = r.agent_id AND s.slot = d.slot;
COMMENT ON VIEW pankha.sensor_readings IS
'One row per temperature reading: agent, frame time, sensor id, degrees Celsius. Filter on agent_id and ts.';

CREATE VIEW pankha.fan_readings AS
SELECT r.agent_id, r.ts, f.fan_id, d.rpm, d.speed, d.target_speed, d.status
FROM pankha.readings r
CROSS JOIN LATERAL pankha.decode_fans(r.payload) d
JOIN pankha.fans f ON f.agent_id = r.agent_id AND f.slot = d.slot;
COMMENT ON VIEW pankha.fan_readings IS
'One row per fan reading: rpm, speed and target speed (percent) and status. Filter on agent_id and ts.';

CREATE VIEW pankha.health_readings AS
SELECT r.agent_id, r.ts, h.*
FROM pankha.readings r
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
CROSS JOIN LATERAL (SELECT * FROM pankha.readings r
                    WHERE r.agent_id = a.agent_id ORDER BY r.ts DESC LIMIT 1) r
CROSS JOIN LATERAL pankha.decode_health(r.payload) h;
COMMENT ON VIEW pankha.latest IS
'Each agent''s newest frame: temperatures and fans as JSON objects keyed by id, and the system-health values.';

-- An agent's frames go with it: a re-registered agent id starts a new
-- catalog, and old payloads must not be read through it.
CREATE FUNCTION pankha._forget_agent_readings() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pankha.readings WHERE agent_id = OLD.agent_id;
    RETURN OLD;
END
$$;
CREATE TRIGGER forget_readings AFTER DELETE ON pankha.agents
    FOR EACH ROW EXECUTE FUNCTION pankha._forget_agent_readings();
-- Pankha extension: credentials.  Agent tokens, enrollment keys and
-- dashboard tokens are bearer tokens of 48 strong random bytes, shown once
-- and stored only as a SHA-256 digest.  The first 16 characters after the
-- kind prefix are kept in clear as a lookup selector, so a presented token
-- is found by index and then compared with pankha.digest_equal(), which
-- takes the same time wherever the digests differ.
--
-- Also creates the two roles of the extension: pankha_bridge (what a
-- bridge needs, no direct table writes) and pankha_reader (reports).
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- Roles are cluster-wide while the extension is per database, so they are
-- created only when missing.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pankha_bridge') THEN
        CREATE ROLE pankha_bridge NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pankha_reader') THEN
        CREATE ROLE pankha_reader NOLOGIN;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA pankha TO pankha_bridge, pankha_reader;

CREATE FUNCTION pankha.random_token(prefix text) RETURNS text
AS 'MODULE_PATHNAME', 'pankha_random_token'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION pankha.random_token(text) IS
'A new bearer token: the prefix followed by 48 strong random bytes in base64url (64 characters).';

CREATE FUNCTION pankha.digest_equal(a bytea, b bytea) RETURNS boolean
AS 'MODULE_PATHNAME', 'pankha_digest_equal'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION pankha.digest_equal(bytea, bytea) IS
'True when two digests are equal; runs in time independent of where they differ.';

CREATE TABLE pankha.tokens (
    token_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('agent', 'enrollment', 'ui')),
    selector     text NOT NULL UNIQUE,
    token_hash   bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    agent_id     text REFERENCES pankha.agents ON DELETE CASCADE,
    user_name    text,
    role         text CHECK (role IN ('viewer', 'operator', 'admin')),
    comment      text,
    max_uses     integer CHECK (max_uses > 0),
    use_count    bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT session_user,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK ((kind = 'agent') = (agent_id IS NOT NULL)),
    CHECK ((kind = 'ui') = (user_name IS NOT NULL AND role IS NOT NULL))
);
CREATE INDEX ON pankha.tokens (agent_id);
COMMENT ON TABLE pankha.tokens IS
'Bearer tokens (agent, enrollment, ui), stored as selector + SHA-256 digest only.  Read pankha.token_list instead: it leaves the digests out.';
SELECT pg_catalog.pg_extension_config_dump('pankha.tokens', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.tokens', 'token_id'), '');

CREATE VIEW pankha.token_list AS
SELECT token_id, kind, agent_id, user_name, role, comment, max_uses, use_count,
       created_at, created_by, expires_at, revoked_at, last_used_at,
       revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           AND (max_uses IS NULL OR use_count < max_uses) AS active
FROM pankha.tokens;
COMMENT ON VIEW pankha.token_list IS
'Every token without its secret parts: kind, owner, lifetime, use and whether it is active.';

-- The kind each token prefix stands for.
CREATE FUNCTION pankha.token_prefix(kind text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE kind WHEN 'agent' THEN 'pka_' WHEN 'enrollment' THEN 'pke_' WHEN 'ui' THEN 'pku_' END;
COMMENT ON FUNCTION pankha.token_prefix(text) IS
'The prefix that marks a token of the given kind: pka_ (agent), pke_ (enrollment), pku_ (ui).';

-- Issues a token of a kind, stores its digest and returns it; the only
-- place a token exists in clear.
CREATE FUNCTION pankha.issue_token(kind text, agent_id text DEFAULT NULL,
                                   user_name text DEFAULT NULL, role text DEFAULT NULL,
                                   comment text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                   max_uses integer DEFAULT NULL,
                                   OUT token text, OUT token_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    prefix text := pankha.token_prefix(kind);
BEGIN
    token := pankha.random_token(prefix);
    INSERT INTO pankha.tokens AS t (kind, selector, token_hash, agent_id, user_name, role,
                                    comment, expires_at, max_uses)
    VALUES (kind, substr(token, length(prefix) + 1, 16), sha256(convert_to(token, 'UTF8')),
            agent_id, user_name, role, comment, expires_at, max_uses)
    RETURNING t.token_id INTO token_id;
END
$$;
REVOKE ALL ON FUNCTION pankha.issue_token(text, text, text, text, text, timestamptz, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.issue_token(text, text, text, text, text, timestamptz, integer) IS
'Internal: creates a token of the given kind, stores only its digest and returns it with its id.';

-- Finds the live token row a presented token stands for, comparing digests
-- in constant time.  Returns NULL and a reason when there is none.
CREATE FUNCTION pankha.check_token(kind text, token text,
                                   OUT token_id bigint, OUT reason text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    prefix text := pankha.token_prefix(kind);
    tok pankha.tokens;
BEGIN
    IF token IS NULL OR length(token) <> length(prefix) + 64 OR left(token, length(prefix)) <> prefix THEN
        reason := 'malformed token';
        RETURN;
    END IF;
    SELECT * INTO tok FROM pankha.tokens t
    WHERE t.selector = substr(token, length(prefix) + 1, 16) AND t.kind = check_token.kind;
    IF NOT FOUND OR NOT pankha.digest_equal(tok.token_hash, sha256(convert_to(token, 'UTF8'))) THEN
        reason := 'unknown token';
    ELSIF tok.revoked_at IS NOT NULL THEN
        reason := 'revoked token';
    ELSIF tok.expires_at <= now() THEN
        reason := 'expired token';
    ELSIF tok.use_count >= tok.max_uses THEN
        reason := 'used up token';
    ELSE
        token_id := tok.token_id;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pankha.check_token(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.check_token(text, text) IS
'Internal: the id of the live token of that kind matching the presented one, or NULL and why not.';

-- Raises a clear error unless an agent id is well formed.
CREATE FUNCTION pankha.check_agent_id(agent_id text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF agent_id IS NULL OR NOT pankha.valid_id(agent_id) THEN
        RAISE EXCEPTION 'invalid agent_id'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An agent_id is 1 to 64 bytes long without control characters.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_agent_id(text) IS
'Raises invalid_parameter_value unless the agent id is 1 to 64 bytes without control characters.';

-- Inserts a new agent after checking every field; shared by registration
-- and enrollment.
CREATE FUNCTION pankha.insert_agent(agent_id text, name text, hostname text, capabilities jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.check_agent_id(agent_id);
    IF name IS NULL OR length(name) NOT BETWEEN 1 AND 128 OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid name for agent "%"', agent_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An agent name is 1 to 128 characters long without control characters.';
    END IF;
    IF hostname IS NOT NULL AND (length(hostname) NOT BETWEEN 1 AND 255 OR hostname ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'invalid hostname for agent "%"', agent_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A hostname is 1 to 255 characters long without control characters.';
    END IF;
    IF capabilities IS NOT NULL AND jsonb_typeof(capabilities) <> 'object' THEN
        RAISE EXCEPTION 'invalid capabilities for agent "%"', agent_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('capabilities must be a JSON object, not %s.', jsonb_typeof(capabilities));
    END IF;
    IF octet_length(capabilities::text) > 65536 THEN
        RAISE EXCEPTION 'capabilities of agent "%" are too large', agent_id
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('capabilities may take 65536 bytes as JSON text; these take %s.',
                                  octet_length(capabilities::text));
    END IF;
    BEGIN
        INSERT INTO pankha.agents (agent_id, name, hostname, capabilities)
        VALUES (agent_id, name, hostname, coalesce(capabilities, '{}'));
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'agent "%" is already registered', agent_id
            USING ERRCODE = 'unique_violation',
                  HINT = 'Use pankha.rotate_agent_token() to give an existing agent a new token.';
    END;
END
$$;
REVOKE ALL ON FUNCTION pankha.insert_agent(text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.insert_agent(text, text, text, jsonb) IS
'Internal: validates and inserts a new agent.';

CREATE FUNCTION pankha.register_agent(agent_id text, name text, hostname text DEFAULT NULL,
                                      capabilities jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    issued record;
BEGIN
    PERFORM pankha.insert_agent(agent_id, name, hostname, capabilities);
    issued := pankha.issue_token('agent', agent_id);
    PERFORM pankha.audit('agent.registered', agent_id,
                         jsonb_build_object('name', name, 'hostname', hostname,
                                            'token_id', issued.token_id));
    RETURN issued.token;
END
$$;
REVOKE ALL ON FUNCTION pankha.register_agent(text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.register_agent(text, text, text, jsonb) IS
'Registers an agent and returns its bearer token (shown only this once; only a digest is kept).';

CREATE FUNCTION pankha.rotate_agent_token(agent_id text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    issued record;
BEGIN
    PERFORM pankha.check_agent_id(agent_id);
    PERFORM FROM pankha.agents a WHERE a.agent_id = rotate_agent_token.agent_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM pankha.revoke_agent_tokens(agent_id);
    issued := pankha.issue_token('agent', agent_id);
    PERFORM pankha.audit('token.created', agent_id,
                         jsonb_build_object('kind', 'agent', 'token_id', issued.token_id));
    RETURN issued.token;
END
$$;
REVOKE ALL ON FUNCTION pankha.rotate_agent_token(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.rotate_agent_token(text) IS
'Revokes every token of an agent and returns a new one (shown only this once).';

CREATE FUNCTION pankha.create_enrollment_key(comment text DEFAULT NULL, expires interval DEFAULT '1 day',
                                             max_uses integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    issued record;
BEGIN
    IF expires IS NULL OR expires <= interval '0' THEN
        RAISE EXCEPTION 'invalid expires for an enrollment key'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An enrollment key must expire after a positive interval.';
    END IF;
    IF max_uses IS NOT NULL AND max_uses < 1 THEN
        RAISE EXCEPTION 'invalid max_uses for an enrollment key'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max_uses is at least 1, or NULL for no limit.';
    END IF;
    issued := pankha.issue_token('enrollment', comment => comment,
                                 expires_at => now() + expires, max_uses => max_uses);
    PERFORM pankha.audit('token.created', NULL,
                         jsonb_build_object('kind', 'enrollment', 'token_id', issued.token_id,
                                            'comment', comment, 'expires_at', now() + expires,
                                            'max_uses', max_uses));
    RETURN issued.token;
END
$$;
REVOKE ALL ON FUNCTION pankha.create_enrollment_key(text, interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_enrollment_key(text, interval, integer) IS
'Returns a new enrollment key (shown only this once) with which agents can register themselves until it expires or is used max_uses times.';

-- The enrollment itself, without raising for a bad key, so that the failed
-- attempt stays in the audit log when the caller commits.
CREATE FUNCTION pankha.try_enroll_agent(enrollment_key text, agent_id text, name text,
                                        hostname text DEFAULT NULL, capabilities jsonb DEFAULT NULL,
                                        client_addr text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    key record;
    issued record;
BEGIN
    key := pankha.check_token('enrollment', enrollment_key);
    IF key.token_id IS NULL THEN
        PERFORM pankha.audit('auth.failed', left(agent_id, 64),
                             jsonb_build_object('kind', 'enrollment', 'reason', key.reason),
                             client_addr);
        RETURN NULL;
    END IF;
    -- Counting the use under a row lock keeps max_uses exact under concurrency.
    UPDATE pankha.tokens t SET use_count = t.use_count + 1, last_used_at = now()
    WHERE t.token_id = key.token_id AND (t.max_uses IS NULL OR t.use_count < t.max_uses);
    IF NOT FOUND THEN
        PERFORM pankha.audit('auth.failed', left(agent_id, 64),
                             jsonb_build_object('kind', 'enrollment', 'reason', 'used up token'),
                             client_addr);
        RETURN NULL;
    END IF;
    PERFORM pankha.insert_agent(agent_id, name, hostname, capabilities);
    issued := pankha.issue_token('agent', agent_id);
    PERFORM pankha.audit('agent.registered', agent_id,
                         jsonb_build_object('name', name, 'hostname', hostname,
                                            'token_id', issued.token_id,
                                            'enrollment_key_id', key.token_id),
                         client_addr);
    RETURN issued.token;
END
$$;
REVOKE ALL ON FUNCTION pankha.try_enroll_agent(text, text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.try_enroll_agent(text, text, text, text, jsonb, text) IS
'Registers an agent with an enrollment key and returns its token, or NULL (audited) when the key is bad.';

CREATE FUNCTION pankha.enroll_agent(enrollment_key text, agent_id text, name text,
                                    hostname text DEFAULT NULL, capabilities jsonb DEFAULT NULL,
                                    client_addr text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    token text;
BEGIN
    token := pankha.try_enroll_agent(enrollment_key, agent_id, name, hostname, capabilities, client_addr);
    IF token IS NULL THEN
        RAISE EXCEPTION 'invalid enrollment key'
            USING ERRCODE = 'invalid_password',
                  HINT = 'Call pankha.try_enroll_agent() instead to keep the failed attempt in the audit log.';
    END IF;
    RETURN token;
END
$$;
REVOKE ALL ON FUNCTION pankha.enroll_agent(text, text, text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.enroll_agent(text, text, text, text, jsonb, text) IS
'Registers an agent with an enrollment key and returns its token; raises invalid_password (28P01) for a bad key.';

CREATE FUNCTION pankha.create_ui_token(name text, role text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    issued record;
BEGIN
    IF name IS NULL OR NOT pankha.valid_id(name) THEN
        RAISE EXCEPTION 'invalid name for a dashboard token'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A dashboard user name is 1 to 64 bytes long without control characters.';
    END IF;
    IF role IS NULL OR role NOT IN ('viewer', 'operator', 'admin') THEN
        RAISE EXCEPTION 'invalid role "%" for a dashboard token', role
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'role is one of viewer, operator, admin.';
    END IF;
    issued := pankha.issue_token('ui', user_name => name, role => role);
    PERFORM pankha.audit('token.created', NULL,
                         jsonb_build_object('kind', 'ui', 'token_id', issued.token_id,
                                            'user_name', name, 'role', role));
    RETURN issued.token;
END
$$;
REVOKE ALL ON FUNCTION pankha.create_ui_token(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_ui_token(text, text) IS
'Returns a new dashboard token (shown only this once) for a user with role viewer, operator or admin.';

-- Marks one token revoked; tells the bridges when it was an agent's.
CREATE FUNCTION pankha.revoke_token(token_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    tok pankha.tokens;
BEGIN
    UPDATE pankha.tokens t SET revoked_at = now()
    WHERE t.token_id = revoke_token.token_id AND t.revoked_at IS NULL
    RETURNING * INTO tok;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT FROM pankha.tokens t WHERE t.token_id = revoke_token.token_id) THEN
            RAISE EXCEPTION 'token % does not exist', token_id USING ERRCODE = 'undefined_object';
        END IF;
        RETURN false;
    END IF;
    PERFORM pankha.audit('token.revoked', tok.agent_id,
                         jsonb_build_object('kind', tok.kind, 'token_id', tok.token_id,
                                            'user_name', tok.user_name));
    IF tok.kind = 'agent' THEN
        PERFORM pg_notify('pankha_agent',
                          jsonb_build_object('agent_id', tok.agent_id, 'event', 'revoked')::text);
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION pankha.revoke_token(bigint) FROM PUBLIC;
COMMENT ON FUNCTION pankha.revoke_token(bigint) IS
'Revokes a token (see pankha.token_list for ids); false when it was already revoked.  Bridges hear of it on pankha_credentials and close the connections that used it; revoking an agent token also NOTIFYs pankha_agent (event revoked).';

CREATE FUNCTION pankha.revoke_agent_tokens(agent_id text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n integer := 0;
    id bigint;
BEGIN
    PERFORM pankha.check_agent_id(agent_id);
    IF NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = revoke_agent_tokens.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
    FOR id IN SELECT t.token_id FROM pankha.tokens t
              WHERE t.agent_id = revoke_agent_tokens.agent_id AND t.revoked_at IS NULL
              ORDER BY t.token_id
    LOOP
        IF pankha.revoke_token(id) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.revoke_agent_tokens(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.revoke_agent_tokens(text) IS
'Revokes every live token of an agent and returns how many were revoked.';

CREATE FUNCTION pankha.authenticate_agent(agent_id text, token text, client_addr text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
    reason text;
BEGIN
    found_token := pankha.check_token('agent', token);
    reason := found_token.reason;
    IF found_token.token_id IS NOT NULL THEN
        UPDATE pankha.tokens t SET last_used_at = now()
        WHERE t.token_id = found_token.token_id AND t.agent_id = authenticate_agent.agent_id;
        IF FOUND THEN
            RETURN agent_id;
        END IF;
        reason := 'token of another agent';
    END IF;
    PERFORM pankha.audit('auth.failed', left(agent_id, 64),
                         jsonb_build_object('kind', 'agent', 'reason', reason), client_addr);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pankha.authenticate_agent(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.authenticate_agent(text, text, text) IS
'The agent id when the token is a live token of that agent, else NULL (and the failure is audited).';

CREATE FUNCTION pankha.authenticate_ui(token text, client_addr text DEFAULT NULL)
RETURNS TABLE (user_name text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
BEGIN
    found_token := pankha.check_token('ui', token);
    IF found_token.token_id IS NULL THEN
        PERFORM pankha.audit('auth.failed', NULL,
                             jsonb_build_object('kind', 'ui', 'reason', found_token.reason),
                             client_addr);
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = found_token.token_id
    RETURNING t.user_name, t.role;
END
$$;
REVOKE ALL ON FUNCTION pankha.authenticate_ui(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.authenticate_ui(text, text) IS
'The dashboard user and role for a live ui token; no row (and an audited failure) otherwise.';

-- What a bridge needs to answer WebSocket handshakes without a query of
-- its own: the live agent and dashboard tokens as selector and digest
-- (never the tokens).  A bridge loads them whole when it connects, and
-- again by selector when NOTIFY pankha_credentials names one.
CREATE FUNCTION pankha.bridge_credentials(selectors text[] DEFAULT NULL)
RETURNS TABLE (selector text, kind text, token_id bigint, token_hash bytea,
               agent_id text, user_name text, role text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
SELECT t.selector, t.kind, t.token_id, t.token_hash, t.agent_id, t.user_name, t.role, t.expires_at
FROM pankha.tokens t
WHERE t.kind IN ('agent', 'ui')
  AND t.revoked_at IS NULL
  AND (t.expires_at IS NULL OR t.expires_at > now())
  AND (t.max_uses IS NULL OR t.use_count < t.max_uses)
  AND (selectors IS NULL OR t.selector = ANY (selectors))
$$;
REVOKE ALL ON FUNCTION pankha.bridge_credentials(text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.bridge_credentials(text[]) IS
'For bridges: the live agent and dashboard tokens (all, or those with the given selectors) as selector, SHA-256 digest, owner, role and expiry.  A selector asked for and not returned is no longer live.';

-- Tells the bridges which credential changed, so that each reloads just
-- that one: issue, rotation, revocation, deletion (also of an agent, by
-- cascade) and any direct change, but not the last_used_at bookkeeping.
CREATE FUNCTION pankha.tokens_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('pankha_credentials', '*');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.kind IN ('agent', 'ui') THEN
        PERFORM pg_notify('pankha_credentials', OLD.selector);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.kind IN ('agent', 'ui') THEN
        PERFORM pg_notify('pankha_credentials', NEW.selector);	-- the same payload twice is sent once
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pankha.tokens_notify() IS
'Trigger: NOTIFY pankha_credentials with the selector of an agent or dashboard token that changed ("*" after TRUNCATE).';
CREATE TRIGGER tokens_notify
    AFTER INSERT OR DELETE OR UPDATE OF kind, selector, token_hash, agent_id, user_name, role,
                                        max_uses, use_count, expires_at, revoked_at
    ON pankha.tokens FOR EACH ROW EXECUTE FUNCTION pankha.tokens_notify();
CREATE TRIGGER tokens_notify_truncate AFTER TRUNCATE ON pankha.tokens
    FOR EACH STATEMENT EXECUTE FUNCTION pankha.tokens_notify();

-- What authenticate_agent and authenticate_ui leave behind, for handshakes
-- a bridge has answered from its copy of pankha.bridge_credentials: the
-- tokens used get last_used_at, and each refusal one auth.failed row with
-- the reason those functions would have given.
CREATE FUNCTION pankha.record_handshakes(used_token_ids bigint[], failed_kinds text[],
                                         failed_agent_ids text[], failed_tokens text[],
                                         failed_addrs text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    f record;
    found_token record;
    reason text;
    n integer := 0;
BEGIN
    IF cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_agent_ids)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_tokens)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_addrs) THEN
        RAISE EXCEPTION 'the failed_* arrays of pankha.record_handshakes differ in length'
            USING ERRCODE = 'array_subscript_error',
                  DETAIL = 'Each refused handshake has one element in each of them, NULL where unknown.';
    END IF;
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = ANY (used_token_ids) AND t.kind IN ('agent', 'ui');
    FOR f IN SELECT * FROM unnest(failed_kinds, failed_agent_ids, failed_tokens, failed_addrs)
                           AS u(kind, agent_id, token, client_addr)
    LOOP
        IF f.kind IS NULL OR f.kind NOT IN ('agent', 'ui') THEN
            RAISE EXCEPTION 'invalid kind "%" of a refused handshake', f.kind
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'kind is agent or ui.';
        END IF;
        found_token := pankha.check_token(f.kind, f.token);
        reason := found_token.reason;
        IF found_token.token_id IS NOT NULL THEN
            -- live in the database: another agent's, or newer than the bridge's copy
            IF f.kind = 'agent' AND NOT EXISTS (SELECT FROM pankha.tokens t
                                                WHERE t.token_id = found_token.token_id
                                                  AND t.agent_id = f.agent_id) THEN
                reason := 'token of another agent';
            ELSE
                reason := 'token not yet known to the bridge';
            END IF;
        END IF;
        PERFORM pankha.audit('auth.failed', CASE WHEN f.kind = 'agent' THEN left(f.agent_id, 64) END,
                             jsonb_build_object('kind', f.kind, 'reason', reason), f.client_addr);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.record_handshakes(bigint[], text[], text[], text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.record_handshakes(bigint[], text[], text[], text[], text[]) IS
'For bridges: sets last_used_at of the tokens used in accepted handshakes and audits each refused one (kind agent or ui, agent id, presented token, client address) as authenticate_agent or authenticate_ui would; returns how many refusals it audited.';

GRANT EXECUTE ON FUNCTION pankha.authenticate_agent(text, text, text),
                          pankha.authenticate_ui(text, text),
                          pankha.bridge_credentials(text[]),
                          pankha.record_handshakes(bigint[], text[], text[], text[], text[]),
                          pankha.enroll_agent(text, text, text, text, jsonb, text),
                          pankha.try_enroll_agent(text, text, text, text, jsonb, text)
    TO pankha_bridge;
GRANT SELECT ON pankha.token_list TO pankha_reader;
-- Pankha extension: the audit log.  Every registration, token change,
-- failed authentication, command and its outcome, settings and profile
-- change leaves a row here, written by the functions and triggers that make
-- the change.  The dashboard user, when a bridge acts for one, comes from
-- the parameter ui_user of the function called, or from the
-- transaction-local setting pankha_audit.ui_user, which the bridge may set
-- with set_config('pankha_audit.ui_user', 'alice', true); likewise the
-- client address from a client_addr parameter or pankha_audit.client_addr,
-- else the address of the database connection.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.audit_log (
    audit_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    event            text NOT NULL,
    agent_id         text,
    db_role          text NOT NULL DEFAULT session_user,
    application_name text,
    ui_user          text,
    client_addr      text,
    details          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON pankha.audit_log (logged_at);
CREATE INDEX ON pankha.audit_log (agent_id, logged_at);
COMMENT ON TABLE pankha.audit_log IS
'Who did what and when: event (e.g. agent.registered, auth.failed, command.issued, command.acked, setting.changed), the agent concerned, the database role (session_user), application_name, the dashboard user and client address when a bridge passes them, and the details.';
SELECT pg_catalog.pg_extension_config_dump('pankha.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.audit_log', 'audit_id'), '');

-- At most one row; no row means the default retention.
CREATE TABLE pankha.audit_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention interval NOT NULL CHECK (retention >= interval '1 day')
);
COMMENT ON TABLE pankha.audit_settings IS
'How long audit rows are kept (default 180 days when empty); set with pankha.set_audit_retention().';
SELECT pg_catalog.pg_extension_config_dump('pankha.audit_settings', '');

CREATE FUNCTION pankha.audit(event text, agent_id text, details jsonb,
                             client_addr text DEFAULT NULL, ui_user text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
INSERT INTO pankha.audit_log (event, agent_id, application_name, ui_user, client_addr, details)
VALUES (event, agent_id, nullif(current_setting('application_name'), ''),
        coalesce(ui_user, nullif(current_setting('pankha_audit.ui_user', true), '')),
        coalesce(client_addr, nullif(current_setting('pankha_audit.client_addr', true), ''),
                 host(inet_client_addr())),
        coalesce(jsonb_strip_nulls(details), '{}'))
$$;
REVOKE ALL ON FUNCTION pankha.audit(text, text, jsonb, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.audit(text, text, jsonb, text, text) IS
'Internal: appends one row to pankha.audit_log with the current actor.';

-- Makes a dashboard user the actor of the rest of the transaction.
CREATE FUNCTION pankha.set_ui_user(ui_user text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF ui_user IS NOT NULL THEN
        IF NOT pankha.valid_id(ui_user) THEN
            RAISE EXCEPTION 'invalid ui_user'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A dashboard user name is 1 to 64 bytes long without control characters.';
        END IF;
        PERFORM set_config('pankha_audit.ui_user', ui_user, true);
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.set_ui_user(text) IS
'Records a dashboard user as the actor of the audit rows written by the rest of the transaction (NULL leaves it as it is).';

-- Row trigger for configuration tables: one audit row per change, with the
-- row before and after, so direct table writes are audited too.
--
-- A restore from pg_dump loads these tables (they are configuration tables)
-- while the extension's triggers exist; auditing that would take audit_id
-- values the restored log itself needs.  A restore session is recognised by
-- what pg_dump's output always sets: an empty search_path (shown as '' or
-- "") with check_function_bodies off.  That is why this function has no SET
-- search_path of its own (it must see the session's) and qualifies every
-- name instead; it is not SECURITY DEFINER, so only roles that may both
-- write the table and call pankha.audit() can change these tables at all.
CREATE FUNCTION pankha.audit_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    before jsonb := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN pg_catalog.to_jsonb(OLD) END;
    after jsonb := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN pg_catalog.to_jsonb(NEW) END;
BEGIN
    IF pg_catalog.current_setting('search_path') OPERATOR(pg_catalog.=) ANY (ARRAY['', '""'])
       AND pg_catalog.current_setting('check_function_bodies') OPERATOR(pg_catalog.=) 'off' THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND before OPERATOR(pg_catalog.=) after THEN
        RETURN NULL;
    END IF;
    PERFORM pankha.audit(TG_ARGV[0] OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.lower(TG_OP),
                         coalesce(after, before) OPERATOR(pg_catalog.->>) 'agent_id',
                         pg_catalog.jsonb_build_object('old', before, 'new', after));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pankha.audit_change() FROM PUBLIC;
COMMENT ON FUNCTION pankha.audit_change() IS
'Trigger: audits an insert, update or delete on a configuration table as <argument>.<operation> (except while pg_dump output is being restored).';

CREATE FUNCTION pankha.audit_retention() RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce((SELECT retention FROM pankha.audit_settings), interval '180 days')
$$;
COMMENT ON FUNCTION pankha.audit_retention() IS
'How long audit rows are kept (default 180 days).';

CREATE FUNCTION pankha.set_audit_retention(retention interval) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF retention IS NULL OR retention < interval '1 day' THEN
        RAISE EXCEPTION 'invalid audit retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The audit log is kept for at least 1 day.';
    END IF;
    INSERT INTO pankha.audit_settings AS s (retention) VALUES (retention)
    ON CONFLICT (singleton) DO UPDATE SET retention = excluded.retention;
END
$$;
REVOKE ALL ON FUNCTION pankha.set_audit_retention(interval) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_audit_retention(interval) IS
'Sets how long audit rows are kept (at least 1 day).';

CREATE TRIGGER audit_settings_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.audit_settings
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('audit_retention');

-- Deletes audit rows older than the retention; the background worker calls
-- it, and so may anyone allowed to.
CREATE FUNCTION pankha.prune_audit_log() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.audit_log WHERE logged_at < now() - pankha.audit_retention();
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pankha.audit('audit.pruned', NULL,
                             jsonb_build_object('rows', n, 'retention', pankha.audit_retention()));
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_audit_log() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_audit_log() IS
'Deletes audit rows older than pankha.audit_retention() and returns how many.';

GRANT SELECT ON pankha.audit_log, pankha.audit_settings TO pankha_reader;
-- Pankha extension: the durable command queue.
--
-- A command is queued by pankha.send_command() (which NOTIFYs pankha_command
-- on commit), handed to a bridge by pankha.claim_commands() (FOR UPDATE
-- SKIP LOCKED, so two bridges never deliver it at once) and marked sent
-- with a redelivery deadline; pankha.ack_command() records the agent's
-- result and NOTIFYs pankha_command_result.  A command not acknowledged by
-- its deadline is delivered again (at least once) until max_attempts, then
-- it is dead; one past expires_at is expired and never delivered again.
--
--   queued -> sent -> acked | failed
--   queued | sent  -> expired (expires_at passed, or superseded) | dead
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.commands (
    command_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id      text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    command_type  text NOT NULL CHECK (pankha.valid_id(command_type)),
    parameters    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parameters) = 'object'),
    priority      text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    priority_rank smallint GENERATED ALWAYS AS
                  (CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END) STORED,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sent', 'acked', 'failed', 'expired', 'dead')),
    status_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    sent_at       timestamptz,
    redeliver_at  timestamptz,
    acked_at      timestamptz,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    success       boolean,
    error         text,
    issued_by     text NOT NULL DEFAULT session_user,
    CHECK (expires_at > created_at),
    CHECK (status <> 'sent' OR redeliver_at IS NOT NULL)
);
CREATE INDEX commands_deliverable ON pankha.commands (agent_id, priority_rank, created_at)
    WHERE status IN ('queued', 'sent');
CREATE INDEX ON pankha.commands (agent_id, created_at);
COMMENT ON TABLE pankha.commands IS
'The command queue, one row per command, kept after completion as its history.  status_reason says why a command expired or died; success and error are what the agent reported (also for a late ack of an expired command).';
SELECT pg_catalog.pg_extension_config_dump('pankha.commands', '');

-- The maximum length kept of an error text reported by an agent.
CREATE FUNCTION pankha.max_error_length() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 2000;
COMMENT ON FUNCTION pankha.max_error_length() IS
'Error texts from agents are kept up to this many characters.';

-- Audits a command's new final state and tells the dashboards about it.
CREATE FUNCTION pankha.command_finished(command_id uuid, agent_id text, status text,
                                        details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.audit('command.' || status, agent_id,
                         jsonb_build_object('command_id', command_id) || coalesce(details, '{}'));
    PERFORM pg_notify('pankha_command_result',
                      jsonb_build_object('agent_id', agent_id, 'command_id', command_id,
                                         'status', status)::text);
END
$$;
REVOKE ALL ON FUNCTION pankha.command_finished(uuid, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.command_finished(uuid, text, text, jsonb) IS
'Internal: audits a command result and NOTIFYs pankha_command_result with agent_id, command_id and status.';

-- Raises a clear error unless the agent is registered.
CREATE FUNCTION pankha.check_agent(agent_id text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.check_agent_id(agent_id);
    IF NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = check_agent.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_agent(text) IS
'Raises undefined_object (42704) unless the agent is registered.';

-- The fan of an agent, or a clear error naming both.
CREATE FUNCTION pankha.find_fan(agent_id text, fan_id jsonb) RETURNS pankha.fans
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
BEGIN
    IF fan_id IS NULL OR jsonb_typeof(fan_id) <> 'string' THEN
        RAISE EXCEPTION 'parameters.fan_id must be a string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO fan FROM pankha.fans f
    WHERE f.agent_id = find_fan.agent_id AND f.fan_id = find_fan.fan_id #>> '{}';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fan "%" of agent "%" does not exist', fan_id #>> '{}', agent_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Fans are known once the agent has reported them.';
    END IF;
    RETURN fan;
END
$$;
COMMENT ON FUNCTION pankha.find_fan(text, jsonb) IS
'The catalog row of an agent''s fan; raises undefined_object when the agent never reported it.';

-- Raises a clear error when an object has keys outside the allowed list.
CREATE FUNCTION pankha.check_keys(what text, obj jsonb, allowed text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    extra text;
BEGIN
    SELECT k INTO extra FROM jsonb_object_keys(obj) k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF extra IS NOT NULL THEN
        RAISE EXCEPTION '%.%: unknown field', what, extra
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The fields allowed are: %s.', array_to_string(allowed, ', '));
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_keys(text, jsonb, text[]) IS
'Raises invalid_parameter_value naming the first key of obj that is not allowed.';

-- Validates the parameters of the command types agents know and returns
-- them as they are to be delivered; other types pass through unchanged.
CREATE FUNCTION pankha.check_command(agent_id text, command_type text, parameters jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    speed jsonb;
BEGIN
    IF parameters IS NULL OR jsonb_typeof(parameters) <> 'object' THEN
        RAISE EXCEPTION 'parameters must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s was given.', coalesce(jsonb_typeof(parameters), 'NULL'));
    END IF;
    IF octet_length(parameters::text) > 65536 THEN
        RAISE EXCEPTION 'parameters are too large'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('Command parameters may take 65536 bytes as JSON text; these take %s.',
                                  octet_length(parameters::text));
    END IF;
    CASE command_type
    WHEN 'set_fan_speed' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{fan_id,speed}');
        fan := pankha.find_fan(agent_id, parameters -> 'fan_id');
        speed := parameters -> 'speed';
        IF speed IS NULL OR jsonb_typeof(speed) <> 'number' THEN
            RAISE EXCEPTION 'parameters.speed must be a number' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF speed::numeric < fan.min_speed OR speed::numeric > fan.max_speed THEN
            RAISE EXCEPTION 'speed % is outside the limits of fan "%"', speed, fan.fan_id
                USING ERRCODE = 'numeric_value_out_of_range',
                      DETAIL = format('Fan %s of agent %s accepts speeds from %s to %s percent.',
                                      fan.fan_id, agent_id, fan.min_speed, fan.max_speed);
        END IF;
    WHEN 'emergency_stop' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{}');
    WHEN 'restore_auto' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{fan_id}');
        IF parameters ? 'fan_id' THEN
            PERFORM pankha.find_fan(agent_id, parameters -> 'fan_id');
        END IF;
    WHEN 'update_settings' THEN
        PERFORM pankha.check_settings(parameters, 'parameters');
    WHEN 'apply_profile' THEN
        PERFORM pankha.check_keys('parameters', parameters,
                                  '{fan_id,sensor_id,profile,min_speed,max_speed}');
        IF jsonb_typeof(parameters -> 'profile') = 'object' THEN
            parameters := jsonb_set(parameters, '{profile}', parameters -> 'profile' -> 'name');
        END IF;
        -- The curve and limits are always taken from the catalog, so what
        -- the agent runs is what the catalog says.
        RETURN pankha.profile_parameters(agent_id, parameters -> 'fan_id',
                                         parameters -> 'profile', parameters -> 'sensor_id');
    ELSE
        NULL;
    END CASE;
    RETURN parameters;
END
$$;
COMMENT ON FUNCTION pankha.check_command(text, text, jsonb) IS
'Validates command parameters (set_fan_speed, emergency_stop, restore_auto, update_settings, apply_profile) and returns them as delivered.';

-- Supersedes the unfinished commands a new one makes pointless: an older
-- update_settings, or an older apply_profile / restore_auto of the same fan
-- when a new apply_profile or restore_auto for that fan comes.
CREATE FUNCTION pankha.supersede_commands(agent_id text, command_type text, parameters jsonb,
                                          by_command uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    old record;
BEGIN
    IF command_type NOT IN ('update_settings', 'apply_profile', 'restore_auto') THEN
        RETURN;
    END IF;
    -- One superseder per agent at a time: two would otherwise lock the same
    -- rows in different orders.
    PERFORM pg_advisory_xact_lock(hashtext('pankha.supersede'), hashtext(agent_id));
    FOR old IN
        UPDATE pankha.commands c
        SET status = 'expired', status_reason = format('superseded by %s', by_command)
        WHERE c.agent_id = supersede_commands.agent_id
          AND c.status IN ('queued', 'sent')
          AND c.command_id <> by_command
          AND CASE supersede_commands.command_type
              WHEN 'update_settings' THEN c.command_type = 'update_settings'
              ELSE c.command_type IN ('apply_profile', 'restore_auto')
                   AND c.parameters -> 'fan_id' = supersede_commands.parameters -> 'fan_id'
              END
        RETURNING c.command_id, c.status_reason
    LOOP
        PERFORM pankha.command_finished(old.command_id, agent_id, 'expired',
                                        jsonb_build_object('reason', old.status_reason));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.supersede_commands(text, text, jsonb, uuid) FROM PUBLIC;
COMMENT ON FUNCTION pankha.supersede_commands(text, text, jsonb, uuid) IS
'Internal: expires unfinished commands made obsolete by a new one (older update_settings; older apply_profile of the same fan).';

CREATE FUNCTION pankha.send_command(agent_id text, command_type text, parameters jsonb DEFAULT '{}',
                                    priority text DEFAULT 'normal', ttl interval DEFAULT '1 hour',
                                    ui_user text DEFAULT NULL, max_attempts integer DEFAULT 5)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    id uuid := gen_random_uuid();
    checked jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    IF command_type IS NULL OR NOT pankha.valid_id(command_type) THEN
        RAISE EXCEPTION 'invalid command_type'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A command_type is 1 to 64 bytes long without control characters.';
    END IF;
    IF priority IS NULL OR priority NOT IN ('high', 'normal', 'low') THEN
        RAISE EXCEPTION 'invalid priority "%"', priority
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'priority is one of high, normal, low.';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' OR ttl > interval '1 year' THEN
        RAISE EXCEPTION 'invalid ttl "%"', ttl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A command lives for a positive interval of at most 1 year.';
    END IF;
    IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'invalid max_attempts %', max_attempts
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max_attempts is between 1 and 100.';
    END IF;
    checked := pankha.check_command(agent_id, command_type, parameters);

    PERFORM pankha.supersede_commands(agent_id, command_type, checked, id);
    INSERT INTO pankha.commands (command_id, agent_id, command_type, parameters, priority,
                                 expires_at, max_attempts, issued_by)
    VALUES (id, agent_id, command_type, checked, priority, now() + ttl, max_attempts,
            coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user));
    PERFORM pankha.audit('command.issued', agent_id,
                         jsonb_build_object('command_id', id, 'command_type', command_type,
                                            'parameters', checked, 'priority', priority,
                                            'expires_at', now() + ttl));
    PERFORM pg_notify('pankha_command',
                      jsonb_build_object('agent_id', agent_id, 'command_id', id)::text);
    RETURN id;
END
$$;
REVOKE ALL ON FUNCTION pankha.send_command(text, text, jsonb, text, interval, text, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.send_command(text, text, jsonb, text, interval, text, integer) IS
'Validates and queues a command for an agent and returns its id; bridges hear of it through NOTIFY pankha_command on commit.  ui_user names the dashboard user it is sent for.';

CREATE FUNCTION pankha.claim_commands(agent_ids text[], visibility interval DEFAULT '30 seconds',
                                      max_commands integer DEFAULT 100)
RETURNS TABLE (command_id uuid, agent_id text, command_type text, parameters jsonb,
               priority text, attempts integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    c pankha.commands;
    delivered integer := 0;
    skipped integer;
    sent_time timestamptz;
BEGIN
    IF visibility IS NULL OR visibility <= interval '0' OR visibility > interval '1 day' THEN
        RAISE EXCEPTION 'invalid visibility "%"', visibility
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The redelivery deadline is a positive interval of at most 1 day.';
    END IF;
    IF max_commands IS NULL OR max_commands NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'invalid max_commands %', max_commands
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max_commands is between 1 and 10000.';
    END IF;
    -- Deadlines and expiry are judged by the clock, not by the start of the
    -- caller's transaction, which may be older than the call.
    --
    -- Each round locks at most as many rows as are still wanted.  Rows that
    -- turn out expired or dead are retired and the round repeats, so they
    -- never take the place of a deliverable command.
    LOOP
        skipped := 0;
        FOR c IN
            SELECT * FROM pankha.commands q
            WHERE q.agent_id = ANY (agent_ids)
              AND (q.status = 'queued' OR (q.status = 'sent' AND q.redeliver_at <= clock_timestamp()))
            ORDER BY q.priority_rank, q.created_at, q.command_id
            LIMIT max_commands - delivered
            FOR UPDATE SKIP LOCKED
        LOOP
            IF c.expires_at <= clock_timestamp() THEN
                UPDATE pankha.commands q SET status = 'expired', status_reason = 'expired before acknowledgement'
                WHERE q.command_id = c.command_id;
                PERFORM pankha.command_finished(c.command_id, c.agent_id, 'expired',
                                                jsonb_build_object('attempts', c.attempts));
                skipped := skipped + 1;
            ELSIF c.attempts >= c.max_attempts THEN
                UPDATE pankha.commands q SET status = 'dead',
                    status_reason = format('no acknowledgement after %s deliveries', c.attempts)
                WHERE q.command_id = c.command_id;
                PERFORM pankha.command_finished(c.command_id, c.agent_id, 'dead',
                                                jsonb_build_object('attempts', c.attempts));
                skipped := skipped + 1;
            ELSE
                sent_time := clock_timestamp();
                UPDATE pankha.commands q
                SET status = 'sent', attempts = q.attempts + 1, sent_at = sent_time,
                    redeliver_at = sent_time + visibility
                WHERE q.command_id = c.command_id;
                delivered := delivered + 1;
                command_id := c.command_id;
                agent_id := c.agent_id;
                command_type := c.command_type;
                parameters := c.parameters;
                priority := c.priority;
                attempts := c.attempts + 1;
                RETURN NEXT;
            END IF;
        END LOOP;
        EXIT WHEN skipped = 0 OR delivered >= max_commands;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.claim_commands(text[], interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.claim_commands(text[], interval, integer) IS
'For a bridge: the deliverable commands of the given agents, highest priority then oldest, marked sent with a redelivery deadline of now + visibility.  Rows locked by another claimer are skipped; expired and over-tried commands are retired, never returned.';

CREATE FUNCTION pankha.pending_commands(agent_id text, visibility interval DEFAULT '30 seconds',
                                        max_commands integer DEFAULT 100)
RETURNS TABLE (command_id uuid, agent_id text, command_type text, parameters jsonb,
               priority text, attempts integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
SELECT * FROM pankha.claim_commands(ARRAY[agent_id], visibility, max_commands)
$$;
REVOKE ALL ON FUNCTION pankha.pending_commands(text, interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.pending_commands(text, interval, integer) IS
'For the HTTP sync fallback: claims the deliverable commands of one agent, like pankha.claim_commands().';

CREATE FUNCTION pankha.ack_command(agent_id text, command_id uuid, success boolean,
                                   error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    c pankha.commands;
    new_status text;
    kept_error text := left(error, pankha.max_error_length());
BEGIN
    IF success IS NULL THEN
        RAISE EXCEPTION 'success must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF command_id IS NULL THEN
        RAISE EXCEPTION 'command_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO c FROM pankha.commands q WHERE q.command_id = ack_command.command_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % does not exist', command_id USING ERRCODE = 'undefined_object';
    END IF;
    IF agent_id IS DISTINCT FROM c.agent_id THEN
        RAISE EXCEPTION 'command % belongs to another agent', command_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'An agent can only acknowledge its own commands.';
    END IF;
    -- A repeated ack (e.g. after a redelivery) changes nothing.
    IF c.acked_at IS NOT NULL THEN
        RETURN c.status;
    END IF;

    IF c.status IN ('queued', 'sent') THEN
        new_status := CASE WHEN success THEN 'acked' ELSE 'failed' END;
    ELSE
        -- Late: recorded, but an expired or dead command stays so.
        new_status := c.status;
    END IF;
    UPDATE pankha.commands q
    SET status = new_status, acked_at = now(), success = ack_command.success, error = kept_error
    WHERE q.command_id = c.command_id;
    PERFORM pankha.command_finished(c.command_id, c.agent_id, new_status,
                                    jsonb_build_object('success', success, 'error', kept_error,
                                                       'late', CASE WHEN new_status IN ('expired', 'dead') THEN true END));
    RETURN new_status;
END
$$;
REVOKE ALL ON FUNCTION pankha.ack_command(text, uuid, boolean, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.ack_command(text, uuid, boolean, text) IS
'Records an agent''s result for its command and returns the command''s status (acked, failed, or expired/dead for a late ack, which does not resurrect it).  Idempotent; NOTIFYs pankha_command_result.';

-- The background worker's pass over the queue: retires what can no longer
-- be delivered, without waiting for rows a claimer holds.
CREATE FUNCTION pankha.expire_commands() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    FOR c IN
        SELECT q.command_id, q.agent_id, q.attempts,
               CASE WHEN q.expires_at <= now() THEN 'expired' ELSE 'dead' END AS new_status
        FROM pankha.commands q
        WHERE q.status IN ('queued', 'sent')
          AND (q.expires_at <= now()
               OR (q.status = 'sent' AND q.redeliver_at <= now() AND q.attempts >= q.max_attempts))
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE pankha.commands q
        SET status = c.new_status,
            status_reason = CASE c.new_status WHEN 'expired' THEN 'expired before acknowledgement'
                            ELSE format('no acknowledgement after %s deliveries', c.attempts) END
        WHERE q.command_id = c.command_id;
        PERFORM pankha.command_finished(c.command_id, c.agent_id, c.new_status,
                                        jsonb_build_object('attempts', c.attempts));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.expire_commands() FROM PUBLIC;
COMMENT ON FUNCTION pankha.expire_commands() IS
'Marks expired the unfinished commands past expires_at and dead those out of attempts; returns how many.  Called by the background worker.';

-- Finished commands are history; the audit log keeps their story after
-- they are gone from here.
CREATE FUNCTION pankha.prune_commands(keep interval DEFAULT '30 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    IF keep IS NULL OR keep < interval '0' THEN
        RAISE EXCEPTION 'invalid keep "%"', keep
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keep is how long finished commands stay, a non-negative interval.';
    END IF;
    DELETE FROM pankha.commands c
    WHERE c.status IN ('acked', 'failed', 'expired', 'dead') AND c.created_at < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_commands(interval) FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_commands(interval) IS
'Deletes finished (acked, failed, expired, dead) commands created more than keep ago; returns how many.  Unfinished commands are never deleted.';

GRANT EXECUTE ON FUNCTION pankha.claim_commands(text[], interval, integer),
                          pankha.pending_commands(text, interval, integer),
                          pankha.ack_command(text, uuid, boolean, text),
                          pankha.send_command(text, text, jsonb, text, interval, text, integer)
    TO pankha_bridge;
GRANT SELECT ON pankha.commands TO pankha_reader;
-- Pankha extension: agent settings at three levels.
--
-- A setting is stored for a scope, written as text:
--   'global'          the fleet-wide default,
--   'group:<name>'    the agents of a group (each agent is in at most one),
--   'agent:<id>'      one agent,
-- and pankha.effective_settings(agent_id) resolves them: built-in default,
-- then global, then group, then agent.  The result also carries "fans", the
-- per-fan safety limits from the catalog, when any are set.  Every function
-- that changes what an agent's effective settings are queues an
-- update_settings command with the new effective settings to that agent
-- (delivered as config_update); older unfinished ones are superseded.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.setting_definitions (
    key           text PRIMARY KEY,
    value_type    text NOT NULL CHECK (value_type IN ('number', 'boolean', 'string')),
    min_value     numeric,
    max_value     numeric,
    allowed       text[],
    default_value jsonb NOT NULL,
    unit          text,
    description   text NOT NULL
);
COMMENT ON TABLE pankha.setting_definitions IS
'The settings agents know, with their type, range or allowed values, and built-in default.';

INSERT INTO pankha.setting_definitions VALUES
    ('update_interval', 'number', 0.5, 30, NULL, '3', 's', 'Seconds between two data frames.'),
    ('emergency_temp', 'number', 60, 100, NULL, '85', '°C', 'Temperature at which every fan goes to full speed.'),
    ('failsafe_speed', 'number', 0, 100, NULL, '70', '%', 'Fan speed used when the agent loses the server.'),
    ('fan_step', 'number', 2, 100, NULL, '5', '%', 'Largest change of a fan speed in one step.'),
    ('hysteresis', 'number', 0, 10, NULL, '2', '°C', 'Temperature change needed before a fan speed follows it down.'),
    ('log_level', 'string', NULL, NULL, '{trace,debug,info,warn,error}', '"info"', NULL, 'Agent log verbosity.'),
    ('enable_fan_control', 'boolean', NULL, NULL, NULL, 'true', NULL, 'Whether the agent drives fans at all.');

CREATE TABLE pankha.agent_groups (
    group_name  text PRIMARY KEY CHECK (pankha.valid_id(group_name)),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pankha.agent_groups IS
'Named groups of agents; settings can be given per group.';
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_groups', '');

CREATE TABLE pankha.agent_group_members (
    agent_id   text PRIMARY KEY REFERENCES pankha.agents ON DELETE CASCADE,
    group_name text NOT NULL REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    added_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON pankha.agent_group_members (group_name);
COMMENT ON TABLE pankha.agent_group_members IS
'The group of each agent that is in one (at most one per agent).';
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_group_members', '');

CREATE TABLE pankha.settings (
    scope_kind text NOT NULL CHECK (scope_kind IN ('global', 'group', 'agent')),
    group_name text REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    agent_id   text REFERENCES pankha.agents ON DELETE CASCADE,
    key        text NOT NULL REFERENCES pankha.setting_definitions,
    value      jsonb NOT NULL,
    scope      text GENERATED ALWAYS AS (CASE scope_kind WHEN 'global' THEN 'global'
                                         WHEN 'group' THEN 'group:' || group_name
                                         ELSE 'agent:' || agent_id END) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT session_user,
    CHECK ((scope_kind = 'group') = (group_name IS NOT NULL)),
    CHECK ((scope_kind = 'agent') = (agent_id IS NOT NULL)),
    CONSTRAINT settings_scope_key UNIQUE NULLS NOT DISTINCT (scope_kind, group_name, agent_id, key)
);
CREATE INDEX ON pankha.settings (agent_id);
COMMENT ON TABLE pankha.settings IS
'Settings given for a scope (global, a group or an agent); change them with pankha.set_setting() and pankha.reset_setting() so agents are told.';
SELECT pg_catalog.pg_extension_config_dump('pankha.settings', '');

CREATE TRIGGER settings_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.settings
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('setting');
CREATE TRIGGER agent_groups_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.agent_groups
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('group');
CREATE TRIGGER agent_group_members_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.agent_group_members
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('group_member');

-- Raises a clear error unless value is valid for the setting key.
CREATE FUNCTION pankha.check_setting(key text, value jsonb, what text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    def pankha.setting_definitions;
    name text := coalesce(what || '.', '') || key;
BEGIN
    SELECT * INTO def FROM pankha.setting_definitions d WHERE d.key = check_setting.key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('The settings are: %s.',
                                (SELECT string_agg(d.key, ', ' ORDER BY d.key) FROM pankha.setting_definitions d));
    END IF;
    IF value IS NULL OR jsonb_typeof(value) IS DISTINCT FROM def.value_type THEN
        RAISE EXCEPTION 'setting "%" must be a %', name, def.value_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s was given.', coalesce(jsonb_typeof(value), 'NULL'));
    END IF;
    IF def.value_type = 'number' AND value::numeric NOT BETWEEN def.min_value AND def.max_value THEN
        RAISE EXCEPTION 'setting "%" is out of range', name
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('%s must be between %s and %s%s; %s was given.', key,
                                  def.min_value, def.max_value, coalesce(' ' || def.unit, ''), value);
    END IF;
    IF def.allowed IS NOT NULL AND value #>> '{}' <> ALL (def.allowed) THEN
        RAISE EXCEPTION 'setting "%" has an unknown value %', name, value
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s is one of %s.', key, array_to_string(def.allowed, ', '));
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_setting(text, jsonb, text) IS
'Raises invalid_parameter_value (unknown key, wrong type or value) or numeric_value_out_of_range unless the value suits the setting.';

-- Validates a whole settings object, as carried by update_settings.
CREATE FUNCTION pankha.check_settings(settings jsonb, what text DEFAULT 'settings')
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    item record;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR item IN SELECT * FROM jsonb_each(settings) ORDER BY 1 LOOP
        -- "fans" carries catalog limits, not a setting of its own.
        IF item.key = 'fans' THEN
            IF jsonb_typeof(item.value) <> 'object' THEN
                RAISE EXCEPTION '%.fans must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSE
            PERFORM pankha.check_setting(item.key, item.value, what);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.check_settings(jsonb, text) IS
'Raises a clear error unless every key of the object is a known setting with a valid value ("fans" is allowed as an object).';

-- Splits a scope into its kind and name, checking that the group or the
-- agent exists.
CREATE FUNCTION pankha.parse_scope(scope text, OUT scope_kind text, OUT group_name text,
                                   OUT agent_id text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF scope = 'global' THEN
        scope_kind := 'global';
    ELSIF scope LIKE 'group:%' THEN
        scope_kind := 'group';
        group_name := substr(scope, 7);
        IF NOT EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = parse_scope.group_name) THEN
            RAISE EXCEPTION 'group "%" does not exist', group_name
                USING ERRCODE = 'undefined_object', HINT = 'Create it with pankha.create_group().';
        END IF;
    ELSIF scope LIKE 'agent:%' THEN
        scope_kind := 'agent';
        agent_id := substr(scope, 7);
        PERFORM pankha.check_agent(agent_id);
    ELSE
        RAISE EXCEPTION 'invalid scope "%"', scope
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A scope is global, group:<name> or agent:<agent_id>.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.parse_scope(text) IS
'Splits global, group:<name> or agent:<agent_id> into its parts; raises when the group or agent does not exist.';

CREATE FUNCTION pankha.effective_settings(agent_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    result jsonb;
    fans jsonb;
BEGIN
    PERFORM pankha.check_agent(agent_id);
    SELECT jsonb_object_agg(d.key, coalesce(
               (SELECT s.value FROM pankha.settings s
                LEFT JOIN pankha.agent_group_members m ON m.agent_id = effective_settings.agent_id
                WHERE s.key = d.key
                  AND (s.scope_kind = 'global'
                       OR (s.scope_kind = 'group' AND s.group_name = m.group_name)
                       OR (s.scope_kind = 'agent' AND s.agent_id = effective_settings.agent_id))
                ORDER BY CASE s.scope_kind WHEN 'agent' THEN 0 WHEN 'group' THEN 1 ELSE 2 END
                LIMIT 1),
               d.default_value))
    INTO result
    FROM pankha.setting_definitions d;

    SELECT jsonb_object_agg(f.fan_id, jsonb_strip_nulls(jsonb_build_object(
               'min_speed', f.min_speed, 'max_speed', f.max_speed, 'emergency_temp', f.emergency_temp)))
    INTO fans
    FROM pankha.fans f
    WHERE f.agent_id = effective_settings.agent_id
      AND (f.min_speed > 0 OR f.max_speed < 100 OR f.emergency_temp IS NOT NULL);
    IF fans IS NOT NULL THEN
        result := result || jsonb_build_object('fans', fans);
    END IF;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION pankha.effective_settings(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.effective_settings(text) IS
'An agent''s settings resolved from built-in defaults, global, its group and its own, plus "fans" with the fan limits set in the catalog.';

-- Serialises changes to settings, groups and fan limits, so each change
-- sees the one before it and the update it queues is complete.
CREATE FUNCTION pankha.lock_settings() RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pankha.settings')::bigint) $$;
COMMENT ON FUNCTION pankha.lock_settings() IS
'Internal: a transaction lock taken by every function that changes effective settings.';

-- The effective settings of the given agents, keyed by agent id.
CREATE FUNCTION pankha.settings_snapshot(agent_ids text[]) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce(jsonb_object_agg(a.agent_id, pankha.effective_settings(a.agent_id)), '{}')
FROM pankha.agents a WHERE a.agent_id = ANY (agent_ids)
$$;
REVOKE ALL ON FUNCTION pankha.settings_snapshot(text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.settings_snapshot(text[]) IS
'Internal: agent id -> effective settings for the given agents.';

-- Queues update_settings to every agent of the snapshot whose effective
-- settings differ from it now, and returns how many were queued.
CREATE FUNCTION pankha.queue_settings_updates(before jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    agent text;
    now_settings jsonb;
    n integer := 0;
BEGIN
    FOR agent IN SELECT jsonb_object_keys(before) ORDER BY 1 LOOP
        now_settings := pankha.effective_settings(agent);
        IF now_settings IS DISTINCT FROM before -> agent THEN
            PERFORM pankha.send_command(agent, 'update_settings', now_settings, 'normal', interval '7 days');
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.queue_settings_updates(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.queue_settings_updates(jsonb) IS
'Internal: queues update_settings to the agents whose effective settings changed since the snapshot.';

-- The agents a scope reaches.
CREATE FUNCTION pankha.scope_agents(scope_kind text, group_name text, agent_id text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce(array_agg(a.agent_id ORDER BY a.agent_id), '{}')
FROM pankha.agents a
WHERE scope_kind = 'global'
   OR (scope_kind = 'agent' AND a.agent_id = scope_agents.agent_id)
   OR (scope_kind = 'group' AND a.agent_id IN (SELECT m.agent_id FROM pankha.agent_group_members m
                                               WHERE m.group_name = scope_agents.group_name))
$$;
COMMENT ON FUNCTION pankha.scope_agents(text, text, text) IS
'The ids of the agents a scope (global, a group, an agent) reaches.';

CREATE FUNCTION pankha.set_setting(scope text, key text, value jsonb, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope(scope);
    PERFORM pankha.check_setting(key, value);
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, s.agent_id));
    INSERT INTO pankha.settings AS t (scope_kind, group_name, agent_id, key, value, updated_by)
    VALUES (s.scope_kind, s.group_name, s.agent_id, key, value,
            coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user))
    ON CONFLICT ON CONSTRAINT settings_scope_key
    DO UPDATE SET value = excluded.value, updated_at = now(), updated_by = excluded.updated_by
    WHERE t.value IS DISTINCT FROM excluded.value;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_setting(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_setting(text, text, jsonb, text) IS
'Sets a setting for a scope (global, group:<name>, agent:<agent_id>) and queues update_settings to every agent whose effective settings change; returns how many.';

CREATE FUNCTION pankha.reset_setting(scope text, key text, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope(scope);
    IF NOT EXISTS (SELECT FROM pankha.setting_definitions d WHERE d.key = reset_setting.key) THEN
        PERFORM pankha.check_setting(key, NULL);
    END IF;
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, s.agent_id));
    DELETE FROM pankha.settings t
    WHERE t.scope_kind = s.scope_kind AND t.group_name IS NOT DISTINCT FROM s.group_name
      AND t.agent_id IS NOT DISTINCT FROM s.agent_id AND t.key = reset_setting.key;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.reset_setting(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.reset_setting(text, text, text) IS
'Removes a setting from a scope, so the next level applies, and queues update_settings where that changes something; returns how many.';

CREATE FUNCTION pankha.create_group(group_name text, description text DEFAULT NULL,
                                    ui_user text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    IF group_name IS NULL OR NOT pankha.valid_id(group_name) THEN
        RAISE EXCEPTION 'invalid group name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A group name is 1 to 64 bytes long without control characters.';
    END IF;
    INSERT INTO pankha.agent_groups (group_name, description) VALUES (group_name, description);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'group "%" already exists', group_name USING ERRCODE = 'unique_violation';
END
$$;
REVOKE ALL ON FUNCTION pankha.create_group(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_group(text, text, text) IS
'Creates an empty agent group.';

CREATE FUNCTION pankha.delete_group(group_name text, ui_user text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope('group:' || group_name);
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, NULL));
    DELETE FROM pankha.agent_groups g WHERE g.group_name = delete_group.group_name;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.delete_group(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.delete_group(text, text) IS
'Deletes a group with its settings; its agents fall back to the global settings (update_settings queued where that changes something).';

CREATE FUNCTION pankha.set_agent_group(agent_id text, group_name text, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    PERFORM pankha.check_agent(agent_id);
    IF group_name IS NOT NULL THEN
        PERFORM pankha.parse_scope('group:' || group_name);
    END IF;
    before := pankha.settings_snapshot(ARRAY[agent_id]);
    IF group_name IS NULL THEN
        DELETE FROM pankha.agent_group_members m WHERE m.agent_id = set_agent_group.agent_id;
    ELSE
        INSERT INTO pankha.agent_group_members AS m (agent_id, group_name)
        VALUES (agent_id, group_name)
        ON CONFLICT ON CONSTRAINT agent_group_members_pkey
        DO UPDATE SET group_name = excluded.group_name, added_at = now()
        WHERE m.group_name <> excluded.group_name;
    END IF;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_agent_group(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_agent_group(text, text, text) IS
'Puts an agent in a group (NULL: in none) and queues update_settings when its effective settings change; returns 1 if queued, else 0.';

CREATE VIEW pankha.agent_settings AS
SELECT a.agent_id, m.group_name, pankha.effective_settings(a.agent_id) AS settings
FROM pankha.agents a LEFT JOIN pankha.agent_group_members m USING (agent_id);
COMMENT ON VIEW pankha.agent_settings IS
'Each agent with its group and effective settings.';

GRANT EXECUTE ON FUNCTION pankha.effective_settings(text),
                          pankha.set_setting(text, text, jsonb, text),
                          pankha.reset_setting(text, text, text),
                          pankha.set_agent_group(text, text, text)
    TO pankha_bridge;
GRANT SELECT ON pankha.setting_definitions, pankha.agent_groups, pankha.agent_group_members,
                pankha.settings TO pankha_reader;
GRANT EXECUTE ON FUNCTION pankha.effective_settings(text) TO pankha_reader;
GRANT SELECT ON pankha.agent_settings TO pankha_reader;
-- Pankha extension: fan profiles and per-fan limits.
--
-- A profile is a named curve of (temperature °C, speed %) points, strictly
-- increasing in temperature, with a hysteresis (°C) and a step (%).  It is
-- assigned to a fan together with the sensor that drives it; assigning
-- queues apply_profile with the whole curve and the fan's limits, so the
-- agent can keep running it without the server:
--   {"fan_id","sensor_id","profile":{"name","points":[[t,s],...],"hysteresis","step"},
--    "min_speed","max_speed"}
-- Changing a profile or a fan's limits queues it again to every fan
-- concerned.  The limits live in pankha.fans (min_speed, max_speed,
-- emergency_temp) and are set with pankha.set_fan_limits().
--
-- At the end, for the credentials part: the bridge role's grants on the
-- ingest functions, and pg_dump registration of the catalog tables the
-- parts above refer to; both need 00_schema.sql and 10_ingest.sql first.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.fan_profiles (
    profile_name text PRIMARY KEY CHECK (pankha.valid_id(profile_name)),
    points       jsonb NOT NULL CHECK (jsonb_typeof(points) = 'array'),
    hysteresis   real NOT NULL DEFAULT 2 CHECK (hysteresis BETWEEN 0 AND 10),
    step         real NOT NULL DEFAULT 5 CHECK (step BETWEEN 2 AND 100),
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pankha.fan_profiles IS
'Fan curves: points is an array of [temperature °C, speed %] pairs, strictly increasing in temperature; hysteresis in °C, step in %.';
SELECT pg_catalog.pg_extension_config_dump('pankha.fan_profiles', '');

CREATE TABLE pankha.fan_profile_assignments (
    agent_id     text NOT NULL,
    fan_id       text NOT NULL,
    profile_name text NOT NULL REFERENCES pankha.fan_profiles ON UPDATE CASCADE,
    sensor_id    text NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, fan_id),
    FOREIGN KEY (agent_id, fan_id) REFERENCES pankha.fans ON DELETE CASCADE,
    FOREIGN KEY (agent_id, sensor_id) REFERENCES pankha.sensors ON DELETE CASCADE
);
CREATE INDEX ON pankha.fan_profile_assignments (profile_name);
COMMENT ON TABLE pankha.fan_profile_assignments IS
'Which profile drives which fan, from which sensor.';
SELECT pg_catalog.pg_extension_config_dump('pankha.fan_profile_assignments', '');

CREATE TRIGGER fan_profiles_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.fan_profiles
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('profile');
CREATE TRIGGER fan_profile_assignments_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.fan_profile_assignments
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('profile_assignment');

-- Validates a curve and returns it as [[temperature, speed], ...]; points
-- may also be given as {"temperature": t, "speed": s}.
CREATE FUNCTION pankha.check_profile_points(points jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    point jsonb;
    i integer := 0;
    t jsonb;
    s jsonb;
    prev numeric;
    result jsonb := '[]';
BEGIN
    IF points IS NULL OR jsonb_typeof(points) <> 'array' THEN
        RAISE EXCEPTION 'points must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A curve is an array of [temperature, speed] pairs.';
    END IF;
    IF jsonb_array_length(points) NOT BETWEEN 2 AND 32 THEN
        RAISE EXCEPTION 'points must have 2 to 32 entries'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s were given.', jsonb_array_length(points));
    END IF;
    FOR point IN SELECT * FROM jsonb_array_elements(points) LOOP
        IF jsonb_typeof(point) = 'array' AND jsonb_array_length(point) = 2 THEN
            t := point -> 0;
            s := point -> 1;
        ELSIF jsonb_typeof(point) = 'object' AND point ?& '{temperature,speed}'
              AND (SELECT count(*) FROM jsonb_object_keys(point)) = 2 THEN
            t := point -> 'temperature';
            s := point -> 'speed';
        ELSE
            RAISE EXCEPTION 'points[%] must be a [temperature, speed] pair', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(t) <> 'number' OR t::numeric NOT BETWEEN -40 AND 150 THEN
            RAISE EXCEPTION 'points[%]: temperature % is not a number between -40 and 150', i, t
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(s) <> 'number' OR s::numeric NOT BETWEEN 0 AND 100 THEN
            RAISE EXCEPTION 'points[%]: speed % is not a number between 0 and 100', i, s
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF prev IS NOT NULL AND t::numeric <= prev THEN
            RAISE EXCEPTION 'points[%]: temperature % is not above the previous point''s %', i, t, prev
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Temperatures must be strictly increasing.';
        END IF;
        prev := t::numeric;
        result := result || jsonb_build_array(jsonb_build_array(t, s));
        i := i + 1;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION pankha.check_profile_points(jsonb) IS
'Validates a fan curve (2 to 32 points, temperatures -40..150 strictly increasing, speeds 0..100) and returns it as [[t, s], ...].';

-- Raises a clear error unless hysteresis and step are in range.
CREATE FUNCTION pankha.check_profile_tuning(hysteresis real, step real) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF hysteresis IS NULL OR hysteresis NOT BETWEEN 0 AND 10 OR hysteresis = 'NaN' THEN
        RAISE EXCEPTION 'hysteresis % is out of range', hysteresis
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'hysteresis is between 0 and 10 °C.';
    END IF;
    IF step IS NULL OR step NOT BETWEEN 2 AND 100 OR step = 'NaN' THEN
        RAISE EXCEPTION 'step % is out of range', step
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'step is between 2 and 100 %.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_profile_tuning(real, real) IS
'Raises numeric_value_out_of_range unless hysteresis is 0..10 °C and step 2..100 %.';

-- The apply_profile parameters for a fan, a profile and a sensor, all
-- checked against the catalog.
CREATE FUNCTION pankha.profile_parameters(agent_id text, fan_id jsonb, profile jsonb, sensor_id jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    prof pankha.fan_profiles;
BEGIN
    fan := pankha.find_fan(agent_id, fan_id);
    IF profile IS NULL OR jsonb_typeof(profile) <> 'string' THEN
        RAISE EXCEPTION 'parameters.profile must be a profile name'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO prof FROM pankha.fan_profiles p WHERE p.profile_name = profile #>> '{}';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', profile #>> '{}'
            USING ERRCODE = 'undefined_object';
    END IF;
    IF sensor_id IS NULL OR jsonb_typeof(sensor_id) <> 'string' THEN
        RAISE EXCEPTION 'parameters.sensor_id must be a string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pankha.sensors s
                   WHERE s.agent_id = profile_parameters.agent_id
                     AND s.sensor_id = profile_parameters.sensor_id #>> '{}') THEN
        RAISE EXCEPTION 'sensor "%" of agent "%" does not exist', sensor_id #>> '{}', agent_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Sensors are known once the agent has reported them.';
    END IF;
    RETURN jsonb_build_object(
        'fan_id', fan.fan_id, 'sensor_id', sensor_id,
        'profile', jsonb_build_object('name', prof.profile_name, 'points', prof.points,
                                      'hysteresis', prof.hysteresis, 'step', prof.step),
        'min_speed', fan.min_speed, 'max_speed', fan.max_speed);
END
$$;
COMMENT ON FUNCTION pankha.profile_parameters(text, jsonb, jsonb, jsonb) IS
'The apply_profile parameters (curve and fan limits) for a fan of an agent, a profile and a sensor; raises when one does not exist.';

-- Queues apply_profile again to every fan the profile (or, with a fan
-- given, that fan) is assigned to; returns how many.
CREATE FUNCTION pankha.reapply_profiles(profile_name text, agent_id text DEFAULT NULL,
                                        fan_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    a pankha.fan_profile_assignments;
    n integer := 0;
BEGIN
    FOR a IN SELECT * FROM pankha.fan_profile_assignments x
             WHERE (reapply_profiles.profile_name IS NULL OR x.profile_name = reapply_profiles.profile_name)
               AND (reapply_profiles.agent_id IS NULL OR x.agent_id = reapply_profiles.agent_id)
               AND (reapply_profiles.fan_id IS NULL OR x.fan_id = reapply_profiles.fan_id)
             ORDER BY x.agent_id, x.fan_id
    LOOP
        PERFORM pankha.send_command(a.agent_id, 'apply_profile',
                                    jsonb_build_object('fan_id', a.fan_id, 'sensor_id', a.sensor_id,
                                                       'profile', a.profile_name),
                                    'normal', interval '7 days');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.reapply_profiles(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.reapply_profiles(text, text, text) IS
'Internal: queues apply_profile to the fans a profile is assigned to (or one fan); returns how many.';

CREATE FUNCTION pankha.create_profile(name text, points jsonb, hysteresis real DEFAULT 2,
                                      step real DEFAULT 5, description text DEFAULT NULL,
                                      ui_user text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    curve jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    IF name IS NULL OR NOT pankha.valid_id(name) THEN
        RAISE EXCEPTION 'invalid profile name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A profile name is 1 to 64 bytes long without control characters.';
    END IF;
    curve := pankha.check_profile_points(points);
    PERFORM pankha.check_profile_tuning(hysteresis, step);
    INSERT INTO pankha.fan_profiles (profile_name, points, hysteresis, step, description)
    VALUES (name, curve, hysteresis, step, description);
    RETURN name;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'profile "%" already exists', name
        USING ERRCODE = 'unique_violation', HINT = 'Change it with pankha.update_profile().';
END
$$;
REVOKE ALL ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text) IS
'Creates a fan profile from [[temperature, speed], ...] points with hysteresis (°C) and step (%).';

CREATE FUNCTION pankha.update_profile(name text, points jsonb, hysteresis real DEFAULT 2,
                                      step real DEFAULT 5, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    curve jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    curve := pankha.check_profile_points(points);
    PERFORM pankha.check_profile_tuning(hysteresis, step);
    UPDATE pankha.fan_profiles p
    SET points = curve, hysteresis = update_profile.hysteresis, step = update_profile.step,
        updated_at = now()
    WHERE p.profile_name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    RETURN pankha.reapply_profiles(name);
END
$$;
REVOKE ALL ON FUNCTION pankha.update_profile(text, jsonb, real, real, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.update_profile(text, jsonb, real, real, text) IS
'Changes a profile''s curve, hysteresis and step and queues apply_profile to every fan using it; returns how many.';

CREATE FUNCTION pankha.delete_profile(name text, ui_user text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    users integer;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    SELECT count(*) INTO users FROM pankha.fan_profile_assignments a WHERE a.profile_name = name;
    IF users > 0 THEN
        RAISE EXCEPTION 'profile "%" is assigned to % fans', name, users
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Unassign it with pankha.unassign_profile() first.';
    END IF;
    DELETE FROM pankha.fan_profiles p WHERE p.profile_name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pankha.delete_profile(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.delete_profile(text, text) IS
'Deletes a profile that no fan uses.';

CREATE FUNCTION pankha.assign_profile(agent_id text, fan_id text, profile text, sensor_id text,
                                      ui_user text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    params jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    params := pankha.profile_parameters(agent_id, to_jsonb(fan_id), to_jsonb(profile), to_jsonb(sensor_id));
    INSERT INTO pankha.fan_profile_assignments AS x (agent_id, fan_id, profile_name, sensor_id)
    VALUES (agent_id, fan_id, profile, sensor_id)
    ON CONFLICT ON CONSTRAINT fan_profile_assignments_pkey
    DO UPDATE SET profile_name = excluded.profile_name, sensor_id = excluded.sensor_id,
                  assigned_at = now();
    RETURN pankha.send_command(agent_id, 'apply_profile', params, 'normal', interval '7 days');
END
$$;
REVOKE ALL ON FUNCTION pankha.assign_profile(text, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.assign_profile(text, text, text, text, text) IS
'Makes a profile drive a fan from a sensor and queues apply_profile with the whole curve and the fan''s limits; returns the command id.';

CREATE FUNCTION pankha.unassign_profile(agent_id text, fan_id text, ui_user text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    DELETE FROM pankha.fan_profile_assignments x
    WHERE x.agent_id = unassign_profile.agent_id AND x.fan_id = unassign_profile.fan_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fan "%" of agent "%" has no profile', fan_id, agent_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN pankha.send_command(agent_id, 'restore_auto', jsonb_build_object('fan_id', fan_id),
                               'normal', interval '7 days');
END
$$;
REVOKE ALL ON FUNCTION pankha.unassign_profile(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.unassign_profile(text, text, text) IS
'Removes a fan''s profile and queues restore_auto for that fan; returns the command id.';

CREATE FUNCTION pankha.set_fan_limits(agent_id text, fan_id text, min_speed real, max_speed real,
                                      emergency_temp real DEFAULT NULL, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    before jsonb;
    queued integer;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    PERFORM pankha.check_agent(agent_id);
    fan := pankha.find_fan(agent_id, to_jsonb(fan_id));
    IF min_speed IS NULL OR max_speed IS NULL OR min_speed = 'NaN' OR max_speed = 'NaN'
       OR min_speed NOT BETWEEN 0 AND 100 OR max_speed NOT BETWEEN 0 AND 100 OR min_speed > max_speed THEN
        RAISE EXCEPTION 'invalid speed limits for fan "%"', fan_id
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('min_speed and max_speed are percentages with min_speed <= max_speed; %s and %s were given.',
                                  coalesce(min_speed::text, 'NULL'), coalesce(max_speed::text, 'NULL'));
    END IF;
    IF emergency_temp IS NOT NULL AND (emergency_temp NOT BETWEEN 0 AND 250 OR emergency_temp = 'NaN') THEN
        RAISE EXCEPTION 'invalid emergency_temp for fan "%"', fan_id
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'emergency_temp is between 0 and 250 °C, or NULL for the agent setting.';
    END IF;
    IF fan.min_speed = min_speed AND fan.max_speed = max_speed
       AND fan.emergency_temp IS NOT DISTINCT FROM emergency_temp THEN
        RETURN 0;
    END IF;
    before := pankha.settings_snapshot(ARRAY[agent_id]);
    UPDATE pankha.fans f
    SET min_speed = set_fan_limits.min_speed, max_speed = set_fan_limits.max_speed,
        emergency_temp = set_fan_limits.emergency_temp
    WHERE f.agent_id = set_fan_limits.agent_id AND f.fan_id = set_fan_limits.fan_id;
    PERFORM pankha.audit('fan_limits.update', agent_id,
                         jsonb_build_object('fan_id', fan_id,
                                            'old', jsonb_build_object('min_speed', fan.min_speed,
                                                                      'max_speed', fan.max_speed,
                                                                      'emergency_temp', fan.emergency_temp),
                                            'new', jsonb_build_object('min_speed', min_speed,
                                                                      'max_speed', max_speed,
                                                                      'emergency_temp', emergency_temp)));
    queued := pankha.queue_settings_updates(before);
    RETURN queued + pankha.reapply_profiles(NULL, agent_id, fan_id);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) IS
'Sets a fan''s safety limits in the catalog and queues them to the agent (update_settings, and apply_profile when a profile drives the fan); returns how many commands were queued.';

GRANT EXECUTE ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text),
                          pankha.update_profile(text, jsonb, real, real, text),
                          pankha.delete_profile(text, text),
                          pankha.assign_profile(text, text, text, text, text),
                          pankha.unassign_profile(text, text, text),
                          pankha.set_fan_limits(text, text, real, real, real, text)
    TO pankha_bridge;
GRANT SELECT ON pankha.fan_profiles, pankha.fan_profile_assignments TO pankha_reader;

-- The bridge calls the ingest functions of 10_ingest.sql (every overload
-- of ingest, ingest_batch and ingest_many); they are granted here, after
-- every part that may define them.  The bridge has no table privileges, so
-- they run as their owner, with the same fixed search_path as every other
-- SECURITY DEFINER function, and only the roles granted may call them.
DO $grants$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pankha'::regnamespace
                AND p.proname IN ('ingest', 'ingest_batch', 'ingest_many')
              ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pankha', fn);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pankha_bridge', fn);
    END LOOP;
END
$grants$;
GRANT SELECT ON pankha.agents, pankha.sensors, pankha.fans, pankha.readings TO pankha_reader;
-- A bridge also serves the dashboard's reports.  Role membership is
-- cluster-wide, so it is granted only once.
DO $member$
BEGIN
    IF NOT pg_catalog.pg_has_role('pankha_bridge', 'pankha_reader', 'MEMBER') THEN
        GRANT pankha_reader TO pankha_bridge;
    END IF;
END
$member$;

-- Tokens, settings, commands and profile assignments refer to agents, fans
-- and sensors, so a dump that keeps them must keep those catalog rows too
-- (pg_dump leaves out extension tables not registered here).
DO $dump$
DECLARE
    rel text;
BEGIN
    FOREACH rel IN ARRAY ARRAY['pankha.agents', 'pankha.sensors', 'pankha.fans'] LOOP
        IF to_regclass(rel) IS NOT NULL THEN
            PERFORM pg_catalog.pg_extension_config_dump(rel::regclass, '');
        END IF;
    END LOOP;
END
$dump$;
-- Pankha extension: what the bridges record about agent connections.
-- A bridge keeps no state of its own; every connect and disconnect lands
-- here, so operators can see reconnect storms and connection durations in
-- SQL, and bridges learn from NOTIFY when a connection moved elsewhere.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.connections (
    connection_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      text NOT NULL,
    bridge_id     text NOT NULL,
    remote_addr   text,
    connected_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at     timestamptz,
    close_code    integer,
    close_reason  text,
    frames_in     bigint NOT NULL DEFAULT 0 CHECK (frames_in >= 0),
    bytes_in      bigint NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    frames_out    bigint NOT NULL DEFAULT 0 CHECK (frames_out >= 0),
    bytes_out     bigint NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    CHECK (closed_at IS NULL OR closed_at >= connected_at)
);
CREATE INDEX connections_agent_idx ON pankha.connections (agent_id, connected_at);
CREATE INDEX connections_open_idx ON pankha.connections (agent_id) WHERE closed_at IS NULL;
COMMENT ON TABLE pankha.connections IS
'One row per WebSocket connection of an agent to a bridge: who, where from, when it opened and closed, why it closed, and how much it carried.  Rows with closed_at NULL are open.';

-- The latest status report of each agent (the "status" message).
CREATE TABLE pankha.agent_reports (
    agent_id    text PRIMARY KEY REFERENCES pankha.agents ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    report      jsonb NOT NULL CHECK (jsonb_typeof(report) = 'object')
);
COMMENT ON TABLE pankha.agent_reports IS
'The most recent status message of each agent (uptime, memory and whatever else the agent reports).';

-- connection_opened: record a new connection, mark the agent online and
-- tell other bridges (channel pankha_agent) to close any older connection
-- of the same agent.  Returns the connection id; ids grow, so a bridge can
-- tell which of two connections is the newer.
CREATE FUNCTION pankha.connection_opened(agent_id text, bridge_id text, remote_addr text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id     bigint;
    was_online boolean;
BEGIN
    IF agent_id IS NULL OR NOT pankha.valid_id(agent_id) THEN
        RAISE EXCEPTION 'agent_id must be 1 to 64 bytes without control characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF bridge_id IS NULL OR bridge_id = '' THEN
        RAISE EXCEPTION 'bridge_id must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT a.status = 'online' INTO was_online
      FROM pankha.agents a
     WHERE a.agent_id = connection_opened.agent_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id
            USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE pankha.agents a SET status = 'online', last_seen = now()
     WHERE a.agent_id = connection_opened.agent_id;

    INSERT INTO pankha.connections (agent_id, bridge_id, remote_addr)
    VALUES (agent_id, bridge_id, remote_addr)
    RETURNING connection_id INTO new_id;

    IF EXISTS (SELECT 1 FROM pankha.connections c
                WHERE c.agent_id = connection_opened.agent_id
                  AND c.closed_at IS NULL AND c.connection_id < new_id) THEN
        PERFORM pg_notify('pankha_agent',
            json_build_object('agent_id', agent_id, 'event', 'replaced',
                              'bridge', bridge_id, 'connection', new_id)::text);
    END IF;
    IF NOT was_online THEN
        PERFORM pg_notify('pankha_agent_status',
            json_build_object('agent_id', agent_id, 'status', 'online')::text);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pankha.connection_opened(text, text, text) IS
'Records that an agent connected to a bridge, marks it online (NOTIFY pankha_agent_status) and, when it already had an open connection, asks every bridge to close the older one (NOTIFY pankha_agent, event "replaced").  Returns the new connection id.';

-- connection_closed: record the end of a connection; the agent goes
-- offline unless another connection of it is still open.
CREATE FUNCTION pankha.connection_closed(connection_id bigint, close_code integer, close_reason text,
                                         frames_in bigint DEFAULT 0, bytes_in bigint DEFAULT 0,
                                         frames_out bigint DEFAULT 0, bytes_out bigint DEFAULT 0)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    agent text;
BEGIN
    IF close_code IS NOT NULL AND (close_code < 1000 OR close_code > 4999) THEN
        RAISE EXCEPTION 'close_code % is not a WebSocket close code', close_code
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Close codes are between 1000 and 4999.';
    END IF;
    UPDATE pankha.connections c
       SET closed_at = clock_timestamp(), close_code = connection_closed.close_code,
           close_reason = left(connection_closed.close_reason, 123),
           frames_in = greatest(coalesce(connection_closed.frames_in, 0), 0),
           bytes_in = greatest(coalesce(connection_closed.bytes_in, 0), 0),
           frames_out = greatest(coalesce(connection_closed.frames_out, 0), 0),
           bytes_out = greatest(coalesce(connection_closed.bytes_out, 0), 0)
     WHERE c.connection_id = connection_closed.connection_id AND c.closed_at IS NULL
    RETURNING c.agent_id INTO agent;
    IF NOT FOUND THEN
        RETURN false;           -- unknown or already closed: nothing to do
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pankha.connections c
                    WHERE c.agent_id = agent AND c.closed_at IS NULL) THEN
        UPDATE pankha.agents a SET status = 'offline', last_seen = now()
         WHERE a.agent_id = agent AND a.status = 'online';
        IF FOUND THEN
            PERFORM pg_notify('pankha_agent_status',
                json_build_object('agent_id', agent, 'status', 'offline')::text);
        END IF;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint) IS
'Records that a connection ended (close code, reason, traffic).  The agent goes offline (NOTIFY pankha_agent_status) when it has no other open connection.  Returns false when the connection was unknown or already closed.';

-- bridge_started: a bridge that starts again under the same id closes the
-- rows its previous run left open (it crashed or was killed).
CREATE FUNCTION pankha.bridge_started(bridge_id text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stale bigint;
    n     integer := 0;
BEGIN
    FOR stale IN SELECT c.connection_id FROM pankha.connections c
                  WHERE c.bridge_id = bridge_started.bridge_id AND c.closed_at IS NULL
    LOOP
        PERFORM pankha.connection_closed(stale, 1006, 'bridge restarted');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.bridge_started(text) IS
'Closes the connections a previous run of this bridge left open (code 1006); returns how many.';

-- record_status: keep an agent's latest "status" message.
CREATE FUNCTION pankha.record_status(agent_id text, report jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF report IS NULL OR jsonb_typeof(report) <> 'object' THEN
        RAISE EXCEPTION 'status data must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pankha.agent_reports AS r (agent_id, received_at, report)
    VALUES (agent_id, now(), report)
    ON CONFLICT ON CONSTRAINT agent_reports_pkey
    DO UPDATE SET received_at = excluded.received_at, report = excluded.report;
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'agent "%" is not registered', agent_id
        USING ERRCODE = 'no_data_found';
END
$$;
COMMENT ON FUNCTION pankha.record_status(text, jsonb) IS
'Stores the latest status message an agent sent (replacing the previous one).';

CREATE VIEW pankha.connection_stats AS
SELECT agent_id,
       count(*) AS connections,
       count(*) FILTER (WHERE connected_at > now() - interval '1 hour') AS connects_last_hour,
       count(*) FILTER (WHERE closed_at IS NULL) AS open_connections,
       avg(coalesce(closed_at, now()) - connected_at) AS average_duration,
       max(connected_at) AS last_connected_at
  FROM pankha.connections
 GROUP BY agent_id;
COMMENT ON VIEW pankha.connection_stats IS
'Per agent: how many connections it made (in all and in the last hour), how many are open, and how long they last on average.';

-- agent_sync: the HTTP fallback for agents that cannot hold a WebSocket.
-- One transaction: authenticate, store the frames, record the command
-- acks, and hand back the commands waiting and the effective settings.
-- Bad credentials return NULL (not an error) so the audit entry stays.
CREATE FUNCTION pankha.agent_sync(agent_id text, token text, client_addr text,
                                  frames jsonb, acks jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    results  jsonb;
    commands jsonb;
    ack      jsonb;
    n        integer;
BEGIN
    IF pankha.authenticate_agent(agent_id, token, client_addr) IS DISTINCT FROM agent_id THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(frames) IS DISTINCT FROM 'array' OR jsonb_typeof(acks) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'frames and acks must be JSON arrays'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    n := jsonb_array_length(frames);
    IF n > 0 THEN
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'stored', r.stored, 'sqlstate', r.sqlstate, 'error', r.message)) ORDER BY r.ord)
          INTO results
          FROM pankha.ingest_many(array_fill(agent_id, ARRAY[n]),
                                  ARRAY(SELECT f FROM jsonb_array_elements(frames) WITH ORDINALITY AS e(f, i)
                                        ORDER BY i)) r;
    END IF;
    FOR ack IN SELECT a FROM jsonb_array_elements(acks) AS e(a)
    LOOP
        IF jsonb_typeof(ack) IS DISTINCT FROM 'object' OR jsonb_typeof(ack->'command_id') IS DISTINCT FROM 'string'
           OR jsonb_typeof(ack->'success') IS DISTINCT FROM 'boolean' THEN
            RAISE EXCEPTION 'each ack needs a string command_id and a boolean success'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM pankha.ack_command(agent_id, (ack->>'command_id')::uuid, (ack->>'success')::boolean,
                                   ack->>'error');
    END LOOP;
    SELECT coalesce(jsonb_agg(jsonb_build_object('command_id', c.command_id,
                                                 'command_type', c.command_type,
                                                 'parameters', c.parameters,
                                                 'priority', c.priority)), '[]')
      INTO commands
      FROM pankha.pending_commands(agent_id) c;
    RETURN jsonb_build_object('frames', coalesce(results, '[]'), 'commands', commands,
                              'config', pankha.effective_settings(agent_id));
END
$$;
COMMENT ON FUNCTION pankha.agent_sync(text, text, text, jsonb, jsonb) IS
'The HTTP sync fallback in one call: authenticates the agent (NULL when refused, audited), stores its frames (one outcome each), records its command acks, and returns the commands waiting for it and its effective settings.';

-- agent_group: the group an agent belongs to (NULL when none), for the
-- dashboards' groups.<name> topics.
CREATE FUNCTION pankha.agent_group(agent_id text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT m.group_name FROM pankha.agent_group_members m
             WHERE m.agent_id = agent_group.agent_id);
END
$$;
COMMENT ON FUNCTION pankha.agent_group(text) IS
'The group of an agent, or NULL when it is in none.';
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
    last_status   text,
    PRIMARY KEY (agent_id, bucket, kind, slot)
) PARTITION BY RANGE (bucket);
COMMENT ON TABLE pankha.rollup_1m IS
'1-minute aggregates per agent and sensor (kind s), fan (f), health metric (h) and frame count (r), partitioned by UTC day.  samples counts the values, sum/samples is the average; kept by the background worker, read them through pankha.history() or the *_1m views.';

CREATE TABLE pankha.rollup_1h (LIKE pankha.rollup_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (agent_id, bucket, kind, slot)) PARTITION BY RANGE (bucket);
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

-- The rollup pass finds new frames by received_at in every partition; a
-- BRIN index suits it (received_at follows the insert order) and costs
-- ingest next to nothing.
CREATE INDEX readings_received_at ON pankha.readings USING brin (received_at)
    WITH (pages_per_range = 16, autosummarize = on);

-- Time partitions of the rollup tables: name_YYYYMMDD for a day, name_YYYYMM
-- for a month (UTC).
CREATE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql AS $$
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
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;
COMMENT ON FUNCTION pankha.ensure_time_partition(text, text, timestamptz) IS
'Create the day or month partition of a pankha table partitioned by time that holds ts, unless it exists; returns it.';

CREATE FUNCTION pankha.ensure_rollup_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
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
LANGUAGE sql STABLE AS $$
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
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO pankha.rollup_1m AS m
    SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, v.kind, v.slot,
           count(v.value), min(v.value), max(v.value), sum(v.value),
           (array_agg(v.value ORDER BY r.ts DESC))[1], max(r.ts),
           count(v.speed), min(v.speed), max(v.speed), sum(v.speed),
           count(*) FILTER (WHERE v.kind = 'f' AND ((v.value = 0 AND v.speed > 0) OR v.status = 'stalled')),
           (array_agg(v.status ORDER BY r.ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    JOIN pankha.readings r ON r.agent_id = d.agent_id AND r.ts >= d.lo AND r.ts < d.hi
    CROSS JOIN LATERAL pankha.payload_values(r.payload) v
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (agent_id, bucket, kind, slot) DO UPDATE
    SET samples = EXCLUDED.samples, min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum,
        last = EXCLUDED.last, last_ts = EXCLUDED.last_ts,
        speed_samples = EXCLUDED.speed_samples, speed_min = EXCLUDED.speed_min,
        speed_max = EXCLUDED.speed_max, speed_sum = EXCLUDED.speed_sum,
        stalls = EXCLUDED.stalls, last_status = EXCLUDED.last_status;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) IS
'Internal: recompute the 1-minute rollups of the given stretches (agent, from, to; whole minutes) from pankha.readings; returns the rows written.';

-- Recompute the 1-hour buckets of the given stretches (whole hours) from
-- the 1-minute rollups.
CREATE FUNCTION pankha.rollup_hours(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO pankha.rollup_1h AS h
    SELECT m.agent_id, date_bin('1 hour', m.bucket, pankha.bucket_origin()) AS bucket, m.kind, m.slot,
           sum(m.samples), min(m.min), max(m.max), sum(m.sum),
           (array_agg(m.last ORDER BY m.last_ts DESC))[1], max(m.last_ts),
           sum(m.speed_samples), min(m.speed_min), max(m.speed_max), sum(m.speed_sum),
           sum(m.stalls), (array_agg(m.last_status ORDER BY m.last_ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    JOIN pankha.rollup_1m m ON m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (agent_id, bucket, kind, slot) DO UPDATE
    SET samples = EXCLUDED.samples, min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum,
        last = EXCLUDED.last, last_ts = EXCLUDED.last_ts,
        speed_samples = EXCLUDED.speed_samples, speed_min = EXCLUDED.speed_min,
        speed_max = EXCLUDED.speed_max, speed_sum = EXCLUDED.speed_sum,
        stalls = EXCLUDED.stalls, last_status = EXCLUDED.last_status;
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
LANGUAGE plpgsql AS $$
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
            FROM pankha.readings r
            WHERE r.received_at >= st.watermark AND r.received_at < horizon
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
LANGUAGE plpgsql AS $$
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
'Recompute the rollups of every frame still in pankha.readings (e.g. after restoring raw data); returns the frames read.  Rollups of older, dropped raw data are kept.';
-- Pankha extension: retention tiers and archive-before-drop.
--
-- Raw frames, 1-minute and 1-hour rollups each have their own retention
-- (pankha.raw_retention, pankha.rollup_1m_retention, pankha.rollup_1h_retention);
-- whole partitions past it are dropped, never deleted row by row.  When
-- pankha.archive_directory is set, a partition is first written there as
-- gzip-compressed CSV, and dropped only if that succeeded.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- The time partitions of the pankha tables, with the range each covers,
-- derived from their names (readings_YYYYMMDD, rollup_1m_YYYYMMDD,
-- rollup_1h_YYYYMM).  Partitions named otherwise are not listed and never
-- dropped.
CREATE VIEW pankha.time_partitions AS
SELECT p.relname::text AS parent, c.oid::regclass AS partition,
       x.lo AT TIME ZONE 'UTC' AS range_start, (x.lo + x.span) AT TIME ZONE 'UTC' AS range_end,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace AND n.nspname = 'pankha'
CROSS JOIN LATERAL (SELECT substr(c.relname, length(p.relname) + 2) AS suffix) s
CROSS JOIN LATERAL (
    SELECT CASE WHEN length(s.suffix) = 8 THEN to_date(s.suffix, 'YYYYMMDD')
                ELSE to_date(s.suffix, 'YYYYMM') END::timestamp AS lo,
           CASE WHEN length(s.suffix) = 8 THEN interval '1 day' ELSE interval '1 month' END AS span) x
WHERE p.relname IN ('readings', 'rollup_1m', 'rollup_1h')
  AND c.relname ~ ('^' || p.relname || '_([0-9]{8}|[0-9]{6})$');
COMMENT ON VIEW pankha.time_partitions IS
'The time partitions of pankha.readings (days), pankha.rollup_1m (days) and pankha.rollup_1h (months): the range each covers and its size on disk.';

-- How long each tier is kept.  A 1-minute rollup lives at least as long as
-- the raw frames, since late frames are folded into it.
CREATE FUNCTION pankha.retention(parent text) RETURNS interval
LANGUAGE sql STABLE
RETURN CASE parent
    WHEN 'readings' THEN pankha.setting_interval('pankha.raw_retention', '7 days')
    WHEN 'rollup_1m' THEN greatest(pankha.setting_interval('pankha.rollup_1m_retention', '90 days'),
                                   pankha.setting_interval('pankha.raw_retention', '7 days'))
    WHEN 'rollup_1h' THEN pankha.setting_interval('pankha.rollup_1h_retention', '730 days')
END;
COMMENT ON FUNCTION pankha.retention(text) IS
'How long the partitions of readings, rollup_1m or rollup_1h are kept, from the pankha.*_retention settings.';

-- Write one partition to the archive directory as gzip-compressed CSV.
-- The file appears under its final name only when complete.
CREATE FUNCTION pankha.archive_partition(part regclass, directory text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part);
    target text;
    quoted text;
BEGIN
    IF directory IS NULL OR directory !~ '^/' THEN
        RAISE EXCEPTION 'pankha.archive_directory must be an absolute path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is "%s".', directory);
    END IF;
    target := rtrim(directory, '/') || '/' || name || '.csv.gz';
    -- Single-quote the path for the shell: ' becomes '"'"'.
    quoted := '''' || replace(target, '''', '''"''"''') || '''';
    EXECUTE format('COPY %s TO PROGRAM %L WITH (FORMAT csv, HEADER)', part,
                   format('gzip -c > %s.part && mv -f %s.part %s', quoted, quoted, quoted));
    RETURN target;
END
$$;
REVOKE ALL ON FUNCTION pankha.archive_partition(regclass, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.archive_partition(regclass, text) IS
'Write a partition to directory/<partition>.csv.gz (gzip-compressed CSV with a header) with COPY TO PROGRAM, as the server user; returns the file name.  Raises an error when it could not.';

-- Drop the partitions past their retention, archiving each first when
-- pankha.archive_directory is set.  A partition that cannot be archived or
-- locked is kept, with a warning, and tried again on the next pass.
CREATE FUNCTION pankha.drop_expired_partitions(OUT partition text, OUT archived_to text)
RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    directory text := coalesce(current_setting('pankha.archive_directory', true), '');
    old_lock_timeout text := current_setting('lock_timeout');
    pending boolean;
BEGIN
    -- Never stall ingest behind a drop's lock: give up and retry next pass.
    PERFORM set_config('lock_timeout', '2s', true);
    FOR p IN
        SELECT t.partition, t.parent FROM pankha.time_partitions t
        WHERE t.range_end <= now() - pankha.retention(t.parent)
        ORDER BY t.range_start
    LOOP
        -- Raw frames not yet rolled up wait for the next rollup pass.
        IF p.parent = 'readings' THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s r WHERE r.received_at >= $1)', p.partition)
                INTO pending USING (SELECT s.watermark FROM pankha.rollup_state s);
            CONTINUE WHEN pending;
        END IF;
        BEGIN
            archived_to := NULL;
            IF directory <> '' THEN
                archived_to := pankha.archive_partition(p.partition, directory);
            END IF;
            partition := p.partition::text;
            EXECUTE format('DROP TABLE %s', p.partition);
            RAISE LOG 'pankha: dropped partition % past its retention%', partition,
                coalesce(' (archived to ' || archived_to || ')', '');
            RETURN NEXT;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha: partition % was not dropped: %', p.partition, SQLERRM
                USING DETAIL = 'It is kept and tried again on the next pass.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', old_lock_timeout, true);
END
$$;
REVOKE ALL ON FUNCTION pankha.drop_expired_partitions() FROM PUBLIC;
COMMENT ON FUNCTION pankha.drop_expired_partitions() IS
'Drop the time partitions past their retention (archived first when pankha.archive_directory is set), raw ones only once their frames are rolled up; returns what was dropped and where it was archived.  The worker calls it.';
-- Pankha extension: what the worker watches on each pass — agents going
-- silent and coming back, commands past their deadlines, and alert rules.
--
-- Agent status changes NOTIFY pankha_agent_status {"agent_id","status"};
-- command outcomes NOTIFY pankha_command_result {"agent_id","command_id",
-- "status"} (redelivered commands wake the bridges on pankha_command);
-- alerts NOTIFY pankha_alert with the alert as JSON.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- ---------------------------------------------------------------------
-- Liveness
-- ---------------------------------------------------------------------

-- An agent's update interval in seconds (3 until settings say otherwise).
CREATE FUNCTION pankha.update_interval(agent_id text) RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN coalesce((pankha.effective_settings(agent_id) ->> 'update_interval')::double precision, 3);
COMMENT ON FUNCTION pankha.update_interval(text) IS
'Seconds between two frames of the agent: its effective update_interval setting (3 by default).';

-- How long an agent may be silent before it counts as offline.
CREATE FUNCTION pankha.offline_threshold(agent_id text) RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fixed interval := pankha.setting_interval('pankha.offline_after', '0');
BEGIN
    IF fixed > interval '0' THEN
        RETURN fixed;
    END IF;
    RETURN greatest(interval '15 seconds', 3 * pankha.update_interval(agent_id) * interval '1 second');
END
$$;
COMMENT ON FUNCTION pankha.offline_threshold(text) IS
'How long the agent may stay silent before the worker marks it offline: pankha.offline_after when set, else three of its update intervals and at least 15 seconds.';

-- Persist liveness and move agents between online and offline.
CREATE FUNCTION pankha.update_agent_status(OUT agent_id text, OUT status text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fixed interval := pankha.setting_interval('pankha.offline_after', '0');
    shortest interval := CASE WHEN fixed > interval '0' THEN fixed ELSE interval '15 seconds' END;
BEGIN
    -- Back online: a frame arrived after the time the agent was last known
    -- (compared before that time is overwritten by the flush below).
    FOR agent_id, status IN
        UPDATE pankha.agents g SET status = 'online'
        FROM pankha.agent_liveness() l
        WHERE g.agent_id = l.agent_id AND g.status = 'offline'
          AND l.last_seen > coalesce(g.last_seen, '-infinity')
          AND l.last_seen > now() - pankha.offline_threshold(g.agent_id)
        RETURNING g.agent_id, g.status
    LOOP
        PERFORM pg_notify('pankha_agent_status',
                          jsonb_build_object('agent_id', agent_id, 'status', status)::text);
        RETURN NEXT;
    END LOOP;

    PERFORM pankha.flush_liveness();

    FOR agent_id, status IN
        UPDATE pankha.agents g SET status = 'offline'
        WHERE g.status = 'online'
          AND coalesce(g.last_seen, g.registered_at) < now() - shortest
          AND coalesce(g.last_seen, g.registered_at) < now() - pankha.offline_threshold(g.agent_id)
        RETURNING g.agent_id, g.status
    LOOP
        PERFORM pg_notify('pankha_agent_status',
                          jsonb_build_object('agent_id', agent_id, 'status', status)::text);
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.update_agent_status() FROM PUBLIC;
COMMENT ON FUNCTION pankha.update_agent_status() IS
'Persist liveness from shared memory, mark online the offline agents that sent a frame since, and offline the online ones silent past pankha.offline_threshold(); NOTIFYs pankha_agent_status for each and returns the changes.  The worker calls it.';

-- ---------------------------------------------------------------------
-- Commands
-- ---------------------------------------------------------------------

-- Expire and bury what can no longer be delivered, and put commands whose
-- redelivery deadline passed unacknowledged back in the queue, waking the
-- bridges so they deliver them again.
CREATE FUNCTION pankha.requeue_commands() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    n := pankha.expire_commands();
    FOR c IN
        UPDATE pankha.commands q SET status = 'queued', redeliver_at = NULL
        WHERE q.command_id IN (SELECT s.command_id FROM pankha.commands s
                               WHERE s.status = 'sent' AND s.redeliver_at <= now()
                                 AND s.attempts < s.max_attempts AND s.expires_at > now()
                               FOR UPDATE SKIP LOCKED)
        RETURNING q.agent_id, q.command_id
    LOOP
        PERFORM pg_notify('pankha_command',
                          jsonb_build_object('agent_id', c.agent_id, 'command_id', c.command_id)::text);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.requeue_commands() FROM PUBLIC;
COMMENT ON FUNCTION pankha.requeue_commands() IS
'Expire commands past expires_at and mark dead those out of attempts (NOTIFY pankha_command_result each), then return unacknowledged commands past their redelivery deadline to the queue (NOTIFY pankha_command).  Returns how many changed.  The worker calls it.';

-- ---------------------------------------------------------------------
-- Alerts
-- ---------------------------------------------------------------------

CREATE TABLE pankha.alert_rules (
    rule_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (pankha.valid_id(name)),
    enabled     boolean NOT NULL DEFAULT true,
    agent_id    text REFERENCES pankha.agents ON DELETE CASCADE,
    agent_group text REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    sensor_type text,
    target_id   text,
    condition   text NOT NULL CONSTRAINT alert_rules_condition_known CHECK (condition IN
                ('temperature_above', 'temperature_below', 'fan_rpm_below', 'fan_rpm_above', 'agent_offline')),
    threshold   real CONSTRAINT alert_rules_threshold_needed
                CHECK ((condition = 'agent_offline') = (threshold IS NULL)),
    duration    interval NOT NULL DEFAULT '0' CONSTRAINT alert_rules_duration_positive
                CHECK (duration >= interval '0'),
    cooldown    interval NOT NULL DEFAULT '5 minutes' CONSTRAINT alert_rules_cooldown_positive
                CHECK (cooldown >= interval '0'),
    severity    text NOT NULL DEFAULT 'warning' CONSTRAINT alert_rules_severity_known
                CHECK (severity IN ('info', 'warning', 'critical')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_sensor_type_for_temperatures
        CHECK (sensor_type IS NULL OR condition LIKE 'temperature_%'),
    CONSTRAINT alert_rules_target_for_readings
        CHECK (target_id IS NULL OR condition <> 'agent_offline')
);
COMMENT ON TABLE pankha.alert_rules IS
'Alert rules: a selector (agent_id, agent_group, sensor_type and target_id, a sensor or fan id; NULL matches all; a rule goes with its agent or group), a condition with its threshold (degrees Celsius or rpm), how long it must hold (duration), how long after resolving the same series may not fire again (cooldown), and a severity.  Add them with pankha.add_alert_rule().';
SELECT pg_catalog.pg_extension_config_dump('pankha.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.alert_rules', 'rule_id'), '');

CREATE TABLE pankha.alerts (
    alert_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id        bigint REFERENCES pankha.alert_rules ON DELETE SET NULL,
    rule_name      text NOT NULL,
    agent_id       text NOT NULL,
    target_id      text,
    condition      text NOT NULL,
    threshold      real,
    severity       text NOT NULL,
    state          text NOT NULL CHECK (state IN ('firing', 'resolved')),
    value          real,
    fired_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolved_value real,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX ON pankha.alerts (fired_at);
CREATE INDEX ON pankha.alerts (agent_id, fired_at);
CREATE INDEX ON pankha.alerts (state) WHERE state = 'firing';
COMMENT ON TABLE pankha.alerts IS
'Every alert that fired: which rule, agent and sensor or fan (target_id), the value that fired it, and when it resolved with which value.';
SELECT pg_catalog.pg_extension_config_dump('pankha.alerts', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.alerts', 'alert_id'), '');

-- Where each (rule, agent, series) stands between passes.
CREATE TABLE pankha.alert_state (
    rule_id          bigint NOT NULL REFERENCES pankha.alert_rules ON DELETE CASCADE,
    agent_id         text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    target_id        text NOT NULL,
    pending_since    timestamptz,
    alert_id         bigint REFERENCES pankha.alerts ON DELETE SET NULL,
    last_resolved_at timestamptz,
    PRIMARY KEY (rule_id, agent_id, target_id)
);
COMMENT ON TABLE pankha.alert_state IS
'Internal: per rule, agent and series (target_id is '''' for agent rules): since when the condition holds, the open alert, and when the last one resolved (for the cooldown).';
SELECT pg_catalog.pg_extension_config_dump('pankha.alert_state', '');

-- Whether an agent belongs to a group (pankha.agent_group_members).
CREATE FUNCTION pankha.agent_in_group(agent_id text, group_name text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pankha.agent_group_members m
                   WHERE m.agent_id = agent_in_group.agent_id AND m.group_name = agent_in_group.group_name);
END
$$;
COMMENT ON FUNCTION pankha.agent_in_group(text, text) IS
'True when the agent is a member of the group.';

CREATE FUNCTION pankha.add_alert_rule(name text, condition text, threshold real DEFAULT NULL,
    duration interval DEFAULT '0', cooldown interval DEFAULT '5 minutes',
    severity text DEFAULT 'warning', agent_id text DEFAULT NULL, agent_group text DEFAULT NULL,
    sensor_type text DEFAULT NULL, target_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    id bigint;
BEGIN
    IF name IS NULL OR NOT pankha.valid_id(name) THEN
        RAISE EXCEPTION 'invalid alert rule name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'name is 1 to 64 bytes long without control characters.';
    END IF;
    IF condition IS NULL OR condition NOT IN ('temperature_above', 'temperature_below',
                                              'fan_rpm_below', 'fan_rpm_above', 'agent_offline') THEN
        RAISE EXCEPTION 'invalid condition "%"', condition
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'condition is one of temperature_above, temperature_below, fan_rpm_below, fan_rpm_above, agent_offline.';
    END IF;
    IF condition = 'agent_offline' AND threshold IS NOT NULL THEN
        RAISE EXCEPTION 'threshold must be null for condition agent_offline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF condition <> 'agent_offline' AND (threshold IS NULL OR threshold = 'NaN'
                                         OR threshold IN ('Infinity', '-Infinity')) THEN
        RAISE EXCEPTION 'threshold must be a finite number for condition %', condition
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Temperatures are in degrees Celsius, fan speeds in rpm.';
    END IF;
    IF duration IS NULL OR duration < interval '0' THEN
        RAISE EXCEPTION 'invalid duration "%"', duration
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'duration is an interval of zero or more.';
    END IF;
    IF cooldown IS NULL OR cooldown < interval '0' THEN
        RAISE EXCEPTION 'invalid cooldown "%"', cooldown
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'cooldown is an interval of zero or more.';
    END IF;
    IF severity IS NULL OR severity NOT IN ('info', 'warning', 'critical') THEN
        RAISE EXCEPTION 'invalid severity "%"', severity
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'severity is one of info, warning, critical.';
    END IF;
    IF agent_id IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = add_alert_rule.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
    IF agent_group IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = add_alert_rule.agent_group) THEN
        RAISE EXCEPTION 'group "%" does not exist', agent_group USING ERRCODE = 'undefined_object';
    END IF;
    IF sensor_type IS NOT NULL AND condition NOT LIKE 'temperature_%' THEN
        RAISE EXCEPTION 'sensor_type applies only to temperature conditions'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target_id IS NOT NULL AND condition = 'agent_offline' THEN
        RAISE EXCEPTION 'target_id does not apply to condition agent_offline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pankha.alert_rules (name, condition, threshold, duration, cooldown, severity,
                                    agent_id, agent_group, sensor_type, target_id)
    VALUES (name, condition, threshold, duration, cooldown, severity,
            agent_id, agent_group, sensor_type, target_id)
    RETURNING rule_id INTO id;
    RETURN id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'alert rule "%" already exists', name USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION pankha.add_alert_rule(text, text, real, interval, interval, text, text, text, text, text) IS
'Add an alert rule and return its id; every argument is checked and a bad one named in the error.  Conditions: temperature_above / temperature_below (degrees Celsius), fan_rpm_below / fan_rpm_above (rpm), agent_offline (no threshold).';

-- What every enabled rule sees right now: one row per (rule, agent,
-- series) with the value and whether the condition holds.  Readings
-- come from each online agent's newest frame; an offline agent's
-- sensors are not judged until it is back.
CREATE FUNCTION pankha.alert_observations(OUT rule_id bigint, OUT agent_id text,
    OUT target_id text, OUT value real, OUT active boolean)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
    WITH rules AS (
        SELECT r.*, a.agent_id AS matched_agent, a.status
        FROM pankha.alert_rules r
        JOIN pankha.agents a ON (r.agent_id IS NULL OR r.agent_id = a.agent_id)
        WHERE r.enabled
          AND (r.agent_group IS NULL OR pankha.agent_in_group(a.agent_id, r.agent_group))
    ), newest AS (
        SELECT DISTINCT ON (r.matched_agent) r.matched_agent AS agent_id, f.payload
        FROM rules r
        CROSS JOIN LATERAL (SELECT x.payload FROM pankha.readings x
                            WHERE x.agent_id = r.matched_agent
                            ORDER BY x.ts DESC LIMIT 1) f
        WHERE r.status = 'online' AND r.condition <> 'agent_offline'
    )
    SELECT r.rule_id, r.matched_agent, s.sensor_id, t.temperature,
           CASE r.condition WHEN 'temperature_above' THEN t.temperature > r.threshold
                            ELSE t.temperature < r.threshold END
    FROM rules r
    JOIN newest n ON n.agent_id = r.matched_agent
    CROSS JOIN LATERAL pankha.decode_temperatures(n.payload) t
    JOIN pankha.sensors s ON s.agent_id = r.matched_agent AND s.slot = t.slot
    WHERE r.condition IN ('temperature_above', 'temperature_below')
      AND (r.sensor_type IS NULL OR s.kind = r.sensor_type)
      AND (r.target_id IS NULL OR s.sensor_id = r.target_id)
    UNION ALL
    SELECT r.rule_id, r.matched_agent, f.fan_id, d.rpm,
           CASE r.condition WHEN 'fan_rpm_below' THEN d.rpm < r.threshold
                            ELSE d.rpm > r.threshold END
    FROM rules r
    JOIN newest n ON n.agent_id = r.matched_agent
    CROSS JOIN LATERAL pankha.decode_fans(n.payload) d
    JOIN pankha.fans f ON f.agent_id = r.matched_agent AND f.slot = d.slot
    WHERE r.condition IN ('fan_rpm_below', 'fan_rpm_above') AND d.rpm IS NOT NULL
      AND (r.target_id IS NULL OR f.fan_id = r.target_id)
    UNION ALL
    SELECT r.rule_id, r.matched_agent, '', NULL, r.status = 'offline'
    FROM rules r
    WHERE r.condition = 'agent_offline'
$$;
COMMENT ON FUNCTION pankha.alert_observations() IS
'What each enabled alert rule sees now: per agent and sensor or fan (target_id, '''' for agent rules) the current value and whether the condition holds.';

-- The JSON an alert is announced with.
CREATE FUNCTION pankha.alert_json(a pankha.alerts) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_build_object('alert_id', a.alert_id, 'rule_id', a.rule_id, 'rule', a.rule_name,
                          'agent_id', a.agent_id, 'target_id', a.target_id,
                          'condition', a.condition, 'threshold', a.threshold,
                          'severity', a.severity, 'state', a.state,
                          'value', CASE a.state WHEN 'firing' THEN a.value ELSE a.resolved_value END,
                          'fired_at', a.fired_at, 'resolved_at', a.resolved_at);
COMMENT ON FUNCTION pankha.alert_json(pankha.alerts) IS
'An alert as the JSON sent on NOTIFY pankha_alert: alert_id, rule_id, rule, agent_id, target_id, condition, threshold, severity, state (firing or resolved), value, fired_at, resolved_at.';

-- Judge every rule once: fire what held for its duration and is out of
-- its cooldown, resolve what stopped holding.
CREATE FUNCTION pankha.evaluate_alerts(OUT fired integer, OUT resolved integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    o record;
    r pankha.alert_rules;
    al pankha.alerts;
BEGIN
    fired := 0;
    resolved := 0;
    FOR o IN
        SELECT ob.*, st.pending_since, st.alert_id, st.last_resolved_at
        FROM pankha.alert_observations() ob
        LEFT JOIN pankha.alert_state st
               ON st.rule_id = ob.rule_id AND st.agent_id = ob.agent_id AND st.target_id = ob.target_id
    LOOP
        IF o.active THEN
            CONTINUE WHEN o.alert_id IS NOT NULL;
            SELECT * INTO r FROM pankha.alert_rules x WHERE x.rule_id = o.rule_id;
            IF now() - coalesce(o.pending_since, now()) >= r.duration
               AND (o.last_resolved_at IS NULL OR now() - o.last_resolved_at >= r.cooldown) THEN
                INSERT INTO pankha.alerts (rule_id, rule_name, agent_id, target_id, condition,
                                           threshold, severity, state, value)
                VALUES (r.rule_id, r.name, o.agent_id, nullif(o.target_id, ''), r.condition,
                        r.threshold, r.severity, 'firing', o.value)
                RETURNING * INTO al;
                PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
                fired := fired + 1;
            END IF;
            INSERT INTO pankha.alert_state AS s (rule_id, agent_id, target_id, pending_since, alert_id)
            VALUES (o.rule_id, o.agent_id, o.target_id, coalesce(o.pending_since, now()), al.alert_id)
            ON CONFLICT (rule_id, agent_id, target_id) DO UPDATE
            SET pending_since = EXCLUDED.pending_since, alert_id = EXCLUDED.alert_id;
            al := NULL;
        ELSIF o.alert_id IS NOT NULL THEN
            UPDATE pankha.alerts x SET state = 'resolved', resolved_at = now(), resolved_value = o.value
            WHERE x.alert_id = o.alert_id
            RETURNING * INTO al;
            IF FOUND THEN
                PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
                resolved := resolved + 1;
            END IF;
            UPDATE pankha.alert_state s
            SET pending_since = NULL, alert_id = NULL, last_resolved_at = now()
            WHERE s.rule_id = o.rule_id AND s.agent_id = o.agent_id AND s.target_id = o.target_id;
            al := NULL;
        ELSIF o.pending_since IS NOT NULL THEN
            UPDATE pankha.alert_state s SET pending_since = NULL
            WHERE s.rule_id = o.rule_id AND s.agent_id = o.agent_id AND s.target_id = o.target_id;
        END IF;
    END LOOP;

    -- A rule switched off or deleted resolves its open alerts.
    FOR al IN
        UPDATE pankha.alerts x SET state = 'resolved', resolved_at = now()
        WHERE x.state = 'firing'
          AND NOT EXISTS (SELECT FROM pankha.alert_rules y WHERE y.rule_id = x.rule_id AND y.enabled)
        RETURNING *
    LOOP
        PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
        UPDATE pankha.alert_state s SET alert_id = NULL, pending_since = NULL, last_resolved_at = now()
        WHERE s.alert_id = al.alert_id;
        resolved := resolved + 1;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.evaluate_alerts() FROM PUBLIC;
COMMENT ON FUNCTION pankha.evaluate_alerts() IS
'Judge every enabled alert rule once: fire an alert (NOTIFY pankha_alert, state firing) for a series whose condition has held for the rule''s duration and whose last alert resolved more than the cooldown ago, and resolve (state resolved) those whose condition no longer holds.  The worker calls it each pass; returns the counts.';
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
        SELECT CASE WHEN resolution IS NULL THEN r.ts
                    ELSE date_bin(resolution, r.ts, pankha.bucket_origin()) END AS b,
               min(v.value)::real, max(v.value)::real, avg(v.value), count(v.value)
        FROM pankha.readings r
        CROSS JOIN LATERAL pankha.payload_values(r.payload) v
        WHERE r.agent_id = history.agent_id AND r.ts >= from_ts AND r.ts < to_ts
          AND v.kind = s.kind AND v.slot = s.slot AND v.value IS NOT NULL
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
