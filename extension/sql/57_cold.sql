-- Pankha extension: cold storage, part 2 — the pass that compresses past
-- hours (the table and its codec are in 05_cold.sql).
--
-- Frames older than pankha.compress_after (by default: those before the
-- current UTC day) move from pankha.readings to pankha.frames_cold, one
-- row per agent and hour.  pankha.compress_before() moves the frames of
-- one partition and a range of agents in the transaction it runs in; the
-- worker calls it again, each time in a transaction of its own, until
-- nothing is left, so a pass that is cut short (a crash, a cancel) loses
-- nothing and is simply done again.  Only frames already rolled up are
-- packed, so the rollups never need a compressed frame they have not seen
-- (rollup_rebuild() reads them again).
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- Where the pass stops: the start of the current UTC day by default, a
-- whole hour pankha.compress_after ago when that is set, NULL (no pass)
-- when it is negative.
CREATE FUNCTION pankha.compress_cutoff() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE
    WHEN pankha.setting_interval('pankha.compress_after', '0') < interval '0' THEN NULL
    WHEN pankha.setting_interval('pankha.compress_after', '0') = interval '0'
        THEN date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
    ELSE date_bin('1 hour', now() - pankha.setting_interval('pankha.compress_after', '0'),
                  pankha.bucket_origin())
END;
COMMENT ON FUNCTION pankha.compress_cutoff() IS
'The time before which frames are compressed, from pankha.compress_after: the start of the current UTC day when it is 0 (the default), a whole hour that long ago otherwise, NULL when it is negative (compression off).';

-- On the partitions that have compressed hours: a frame already packed is
-- not stored again (ingest then counts it as stored).  The shared lock
-- waits for a pass packing this agent to commit, so the check sees its rows.
CREATE FUNCTION pankha._cold_dedup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.agent_ts IS NULL THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('pankha cold'), hashtext(NEW.agent_id));
        IF EXISTS (SELECT FROM pankha.frames_cold c
                    WHERE c.agent_id = NEW.agent_id
                      AND c.hour = date_bin('1 hour', NEW.ts, pankha.bucket_origin())
                      AND NEW.ts BETWEEN c.first_ts AND c.last_ts
                      AND EXISTS (SELECT FROM pankha.cold_frames(c.packed, NEW.ts, NEW.ts + interval '1 microsecond'))) THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pankha._cold_dedup() IS
'Internal: trigger on the partitions of pankha.readings with compressed hours; skips a frame that is compressed already.';

-- Compress the frames before a time of one partition and up to max_agents
-- agents (the first, by agent_id, that have frames to pack): every raw
-- frame rolled up, with ts before before_ts and no agent_ts, goes into the
-- agent's row of its hour, merged with the frames already there.  Returns
-- the frames moved (0 when nothing is left).
CREATE FUNCTION pankha.compress_before(before_ts timestamptz, max_agents integer DEFAULT 16)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    wm timestamptz;
    agents text[];
    moved bigint;
    old_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF before_ts IS NULL THEN
        RETURN 0;
    END IF;
    IF max_agents IS NULL OR max_agents < 1 THEN
        RAISE EXCEPTION 'max_agents must be at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', max_agents);
    END IF;
    -- One pass at a time.
    PERFORM pg_advisory_xact_lock(hashtext('pankha cold pass'), 0);
    SELECT s.watermark INTO wm FROM pankha.rollup_state s;
    before_ts := date_bin('1 hour', least(before_ts, wm), pankha.bucket_origin());
    FOR p IN
        SELECT t.partition, t.range_start FROM pankha.time_partitions t
        WHERE t.parent = 'readings' AND t.range_start < before_ts
        ORDER BY t.range_start
    LOOP
        -- The agents with frames to pack, by a walk over the primary key.
        EXECUTE format($q$
            WITH RECURSIVE a AS (
                (SELECT r.agent_id FROM %1$s r
                  WHERE r.ts < $1 AND r.agent_ts IS NULL AND r.received_at < $2
                  ORDER BY r.agent_id LIMIT 1)
                UNION ALL
                SELECT (SELECT r.agent_id FROM %1$s r
                         WHERE r.agent_id > a.agent_id AND r.ts < $1 AND r.agent_ts IS NULL
                           AND r.received_at < $2
                         ORDER BY r.agent_id LIMIT 1)
                FROM a WHERE a.agent_id IS NOT NULL)
            SELECT array_agg(a.agent_id ORDER BY a.agent_id) FROM (SELECT * FROM a LIMIT $3) a
             WHERE a.agent_id IS NOT NULL$q$, p.partition)
            INTO agents USING before_ts, wm, max_agents;
        CONTINUE WHEN agents IS NULL;

        -- Late frames for these agents' packed hours wait for this to commit.
        PERFORM pg_advisory_xact_lock(hashtext('pankha cold'), l.h)
           FROM (SELECT DISTINCT hashtext(a) AS h FROM unnest(agents) a ORDER BY 1) l;
        -- A partition with packed hours refuses frames packed already.
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g
                        WHERE g.tgrelid = p.partition AND g.tgname = 'cold_dedup') THEN
            PERFORM set_config('lock_timeout', '2s', true);
            EXECUTE format('CREATE TRIGGER cold_dedup BEFORE INSERT ON %s '
                           'FOR EACH ROW EXECUTE FUNCTION pankha._cold_dedup()', p.partition);
            PERFORM set_config('lock_timeout', old_lock_timeout, true);
        END IF;

        EXECUTE format($q$
            WITH raw AS (
                DELETE FROM %s r
                 WHERE r.agent_id = ANY ($1) AND r.ts < $2 AND r.agent_ts IS NULL
                   AND r.received_at < $3
                RETURNING r.agent_id, r.ts, r.received_at, r.payload
            ), hours AS (
                SELECT DISTINCT r.agent_id, date_bin('1 hour', r.ts, pankha.bucket_origin()) AS hour
                FROM raw r
            ), old AS (
                DELETE FROM pankha.frames_cold c USING hours h
                 WHERE c.agent_id = h.agent_id AND c.hour = h.hour
                RETURNING c.agent_id, c.hour, c.packed
            ), merged AS (
                -- a frame in both (stored before the trigger was there) is kept once
                SELECT DISTINCT ON (f.agent_id, f.ts) f.*
                FROM (SELECT o.agent_id, o.hour, u.ts, u.received_at, u.payload, 0 AS src
                        FROM old o CROSS JOIN LATERAL pankha.cold_frames(o.packed) u
                      UNION ALL
                      SELECT r.agent_id, date_bin('1 hour', r.ts, pankha.bucket_origin()),
                             r.ts, r.received_at, r.payload, 1
                        FROM raw r) f
                ORDER BY f.agent_id, f.ts, f.src
            ), ins AS (
                INSERT INTO pankha.frames_cold (hour, first_ts, last_ts, received_max, frames, agent_id, packed)
                SELECT m.hour, min(m.ts), max(m.ts), max(m.received_at), count(*), m.agent_id,
                       pankha.cold_pack(array_agg(m.ts ORDER BY m.ts), array_agg(m.received_at ORDER BY m.ts),
                                        array_agg(m.payload ORDER BY m.ts))
                FROM merged m GROUP BY m.agent_id, m.hour
                RETURNING 1
            )
            SELECT count(*) FROM raw$q$, p.partition)
            INTO moved USING agents, before_ts, wm;
        RETURN moved;
    END LOOP;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION pankha.compress_before(timestamptz, integer) IS
'Compress the rolled-up raw frames with ts before before_ts (cut to a whole hour) of the oldest partition that has some and of up to max_agents agents into pankha.frames_cold, in the calling transaction; returns the frames moved, 0 when none are left.  The worker calls it until it returns 0, each call in its own transaction.';

-- One compression step of the worker, in the transaction it is called in.
CREATE FUNCTION pankha.compress_step() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
RETURN pankha.compress_before(pankha.compress_cutoff());
COMMENT ON FUNCTION pankha.compress_step() IS
'Internal: compress the next partition and range of agents before pankha.compress_cutoff(); returns the frames moved.  The worker calls it until it returns 0.';

-- Privileges (issue 13): the pass is the owner's; readers read the
-- compressed frames through pankha.frames and the reading views.
REVOKE ALL ON FUNCTION pankha.compress_cutoff(),
                       pankha._cold_dedup(),
                       pankha.compress_before(timestamptz, integer),
                       pankha.compress_step(),
                       pankha.newest_frame(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.newest_frame(text) TO pankha_reader;
GRANT SELECT ON pankha.frames, pankha.frames_cold TO pankha_reader;
