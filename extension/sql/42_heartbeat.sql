-- Pankha extension: bridge heartbeats (issue 17).  A bridge that dies for
-- good (kill -9, a lost host) cannot record that its connections ended, so
-- without this its agents would stay "online" with open rows forever.
-- Each running bridge beats every few seconds; the worker, and the beat of
-- any other bridge, close the connection rows of a bridge that stopped.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.bridges (
    bridge_id     text PRIMARY KEY CHECK (bridge_id <> '' AND octet_length(bridge_id) <= 128),
    instance      text NOT NULL CHECK (instance <> '' AND octet_length(instance) <= 128),
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_beat     timestamptz NOT NULL DEFAULT clock_timestamp(),
    beat_interval interval NOT NULL CHECK (beat_interval > interval '0'),
    expired_at    timestamptz,
    expired_connections integer NOT NULL DEFAULT 0 CHECK (expired_connections >= 0)
);
SELECT pg_catalog.pg_extension_config_dump('pankha.bridges', '');
COMMENT ON TABLE pankha.bridges IS
'One row per bridge (by bridge id): the run now beating under that id (instance), when it started and last beat, and how often it beats.  expired_at is set when it stopped beating and its open connections were closed for it.';

-- How long the database has been able to hear beats: since the server
-- started, or since it was promoted (the newest timeline history file).
-- A bridge is only judged silent for a time the server was there to hear
-- it, so a restart or a failover does not expire every bridge at once.
CREATE FUNCTION pankha.beats_heard_since() RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    since    timestamptz := pg_postmaster_start_time();
    promoted timestamptz;
BEGIN
    BEGIN
        SELECT max(w.modification) INTO promoted
          FROM pg_ls_waldir() w WHERE w.name LIKE '%.history';
    EXCEPTION WHEN insufficient_privilege THEN
        promoted := NULL;       -- an owner without pg_monitor: start time only
    END;
    RETURN greatest(since, promoted);
END
$$;
REVOKE ALL ON FUNCTION pankha.beats_heard_since() FROM PUBLIC;
COMMENT ON FUNCTION pankha.beats_heard_since() IS
'Since when this server could hear bridge heartbeats: its start, or its promotion from standby when later.';

-- expire_bridges: close the open connections of every bridge that missed
-- three beats (plus two seconds of slack) while the server was listening.
-- After a restart or a promotion every bridge has 10 s more than that to
-- come back (its reconnect back-off reaches 5 s), so the server must have
-- been up for three beats + 12 s before it judges anyone.
CREATE FUNCTION pankha.expire_bridges() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b      record;
    stale  bigint;
    n      integer;
    total  integer := 0;
    heard  timestamptz := pankha.beats_heard_since();
BEGIN
    FOR b IN SELECT r.bridge_id, r.beat_interval * 3 + interval '2 seconds' AS dead_after
               FROM pankha.bridges r
              WHERE r.expired_at IS NULL
                AND r.last_beat < clock_timestamp() - (r.beat_interval * 3 + interval '2 seconds')
                AND heard < clock_timestamp() - (r.beat_interval * 3 + interval '12 seconds')
                FOR UPDATE SKIP LOCKED
    LOOP
        n := 0;
        FOR stale IN SELECT c.connection_id FROM pankha.connections c
                      WHERE c.bridge_id = b.bridge_id AND c.closed_at IS NULL
        LOOP
            IF pankha.connection_closed(stale, 1006, 'bridge stopped beating') THEN
                n := n + 1;
            END IF;
        END LOOP;
        UPDATE pankha.bridges r SET expired_at = clock_timestamp(), expired_connections = n
         WHERE r.bridge_id = b.bridge_id;
        IF n > 0 THEN
            RAISE LOG 'pankha: bridge "%" stopped beating; closed its % open connections',
                b.bridge_id, n;
        END IF;
        total := total + n;
    END LOOP;
    -- a bridge gone for a week is forgotten
    DELETE FROM pankha.bridges r
     WHERE r.expired_at IS NOT NULL AND r.last_beat < clock_timestamp() - interval '7 days';
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION pankha.expire_bridges() FROM PUBLIC;
COMMENT ON FUNCTION pankha.expire_bridges() IS
'Closes (code 1006, "bridge stopped beating") the open connections of each bridge that missed three heartbeats plus two seconds, once this server has been up (or promoted) for three of its heartbeats plus 12 s, and marks it expired; returns how many connections it closed.  The worker and every bridge heartbeat call it.';

-- bridge_beat: a bridge says it is alive.  instance names this run of the
-- bridge (a new one under an old id starts afresh).  expired is true when
-- this very run had been declared dead (its database connection was away
-- longer than its beats allow) and its connections closed: the bridge
-- must then drop its agents so they connect, and are recorded, again.
-- closed is what this beat closed for other, silent bridges.
CREATE FUNCTION pankha.bridge_beat(bridge_id text, instance text, beat_interval_ms integer DEFAULT 5000,
                                   OUT expired boolean, OUT closed integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev pankha.bridges;
BEGIN
    IF bridge_id IS NULL OR bridge_id = '' OR octet_length(bridge_id) > 128 THEN
        RAISE EXCEPTION 'bridge_id must be 1 to 128 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF instance IS NULL OR instance = '' OR octet_length(instance) > 128 THEN
        RAISE EXCEPTION 'instance must be 1 to 128 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF beat_interval_ms IS NULL OR beat_interval_ms < 100 OR beat_interval_ms > 600000 THEN
        RAISE EXCEPTION 'beat_interval_ms must be between 100 and 600000, not %', beat_interval_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO prev FROM pankha.bridges r WHERE r.bridge_id = bridge_beat.bridge_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pankha.bridges (bridge_id, instance, beat_interval)
        VALUES (bridge_id, instance, beat_interval_ms * interval '1 millisecond')
        ON CONFLICT DO NOTHING;
        expired := false;
    ELSE
        expired := prev.instance = instance AND prev.expired_at IS NOT NULL;
        UPDATE pankha.bridges r
           SET last_beat = clock_timestamp(),
               beat_interval = beat_interval_ms * interval '1 millisecond',
               instance = bridge_beat.instance,
               started_at = CASE WHEN prev.instance = bridge_beat.instance THEN r.started_at
                                 ELSE clock_timestamp() END,
               expired_at = NULL,
               expired_connections = 0
         WHERE r.bridge_id = bridge_beat.bridge_id;
    END IF;
    closed := pankha.expire_bridges();
END
$$;
COMMENT ON FUNCTION pankha.bridge_beat(text, text, integer) IS
'A bridge''s heartbeat: records that run instance of bridge bridge_id is alive and beats every beat_interval_ms, then closes the connections of bridges that stopped beating.  expired is true when this run had itself been declared dead (it must drop its agents so they reconnect); closed counts the connections closed for others.';

CREATE VIEW pankha.bridge_status AS
SELECT r.bridge_id, r.instance, r.started_at, r.last_beat, r.beat_interval,
       r.expired_at IS NULL AND r.last_beat >= clock_timestamp() - (r.beat_interval * 3 + interval '2 seconds') AS alive,
       (SELECT count(*) FROM pankha.connections c
         WHERE c.bridge_id = r.bridge_id AND c.closed_at IS NULL) AS open_connections,
       r.expired_at, r.expired_connections
  FROM pankha.bridges r;
COMMENT ON VIEW pankha.bridge_status IS
'Each bridge known from its heartbeats: alive when it beat within three intervals (plus two seconds), with its open connections.';

REVOKE ALL ON FUNCTION pankha.bridge_beat(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.bridge_beat(text, text, integer) TO pankha_bridge;
GRANT SELECT ON pankha.bridge_status TO pankha_reader;
