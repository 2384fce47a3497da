-- Pankha upgrade from 0.1.0 (released, frozen in pankha--0.1.0.sql) to 0.2.0.
--
-- Every change this version makes to the numbered parts in extension/sql
-- is repeated here, so that ALTER EXTENSION pankha UPDATE on a 0.1.0
-- database ends with exactly what CREATE EXTENSION pankha installs
-- (regress/t/upgrade.pl compares the two catalogs object by object).
-- Add each change under a heading naming its feature, in the order the
-- changes landed; use CREATE OR REPLACE for functions whose signature stays,
-- DROP and CREATE (with the grants and comments again) where it changes.
\echo Use "ALTER EXTENSION pankha UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------
-- dump and restore
--
-- The partitioned tables readings, rollup_1m and rollup_1h lose their
-- keys and indexes; every partition holds its own instead (see the comment
-- on pankha.readings in 00_schema.sql), so that pg_restore of a pg_dump
-- re-creates each partition's keys once.  Existing partitions are detached
-- first, which leaves each with its primary key and BRIN index as its own
-- objects under the names they had, then attached again to the key-less
-- parents.  Attaching reads each partition once to check its range.
-- ---------------------------------------------------------------------
DO $$
DECLARE
    parts text[];
    stmt text;
BEGIN
    SELECT array_agg(format('ALTER TABLE %s ATTACH PARTITION %s %s', i.inhparent::regclass,
                            i.inhrelid::regclass, pg_catalog.pg_get_expr(c.relpartbound, c.oid)))
      INTO parts
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent IN ('pankha.readings'::regclass, 'pankha.rollup_1m'::regclass,
                           'pankha.rollup_1h'::regclass);
    FOR stmt IN SELECT format('ALTER TABLE %s DETACH PARTITION %s', i.inhparent::regclass, i.inhrelid::regclass)
                  FROM pg_catalog.pg_inherits i
                 WHERE i.inhparent IN ('pankha.readings'::regclass, 'pankha.rollup_1m'::regclass,
                                       'pankha.rollup_1h'::regclass) LOOP
        EXECUTE stmt;
    END LOOP;
    ALTER TABLE pankha.readings DROP CONSTRAINT readings_pkey;
    DROP INDEX pankha.readings_received_at;
    ALTER TABLE pankha.rollup_1m DROP CONSTRAINT rollup_1m_pkey;
    ALTER TABLE pankha.rollup_1h DROP CONSTRAINT rollup_1h_pkey;
    FOREACH stmt IN ARRAY coalesce(parts, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
END
$$;

-- pg_dump keeps the connection history and the agents' latest reports.
SELECT pg_catalog.pg_extension_config_dump('pankha.connections', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.connections', 'connection_id'), '');
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_reports', '');

CREATE OR REPLACE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
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
        IF parent = 'readings' THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)',
                           name, name || '_pkey');
            EXECUTE format('CREATE INDEX %I ON pankha.%I USING brin (received_at) WITH (pages_per_range = 16, autosummarize = on)',
                           name || '_received_at_idx', name);
        ELSIF parent IN ('rollup_1m', 'rollup_1h') THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, bucket, kind, slot)',
                           name, name || '_pkey');
        END IF;
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;

CREATE OR REPLACE FUNCTION pankha.rollup_minutes(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql AS $$
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
    JOIN pankha.readings r ON r.agent_id = d.agent_id AND r.ts >= d.lo AND r.ts < d.hi
    CROSS JOIN LATERAL pankha.payload_values(r.payload) v
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION pankha.rollup_hours(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql AS $$
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

-- ---------------------------------------------------------------------
-- retention
--
-- What grows row by row is pruned by the worker after a pankha.*_retention
-- setting each: finished commands, closed connections, resolved alerts and
-- stale alert state, stale status reports, and the new record of dropped
-- partitions (pankha.archived_partitions).
-- ---------------------------------------------------------------------
CREATE TABLE pankha.archived_partitions (
    partition   text NOT NULL,
    parent      text NOT NULL,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL,
    bytes       bigint NOT NULL,
    archived_to text,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, dropped_at)
);
CREATE INDEX archived_partitions_dropped_at ON pankha.archived_partitions (dropped_at);
SELECT pg_catalog.pg_extension_config_dump('pankha.archived_partitions', '');
COMMENT ON TABLE pankha.archived_partitions IS
'Every partition the worker dropped past its retention: the range it covered, its size, the archive file it was written to first (NULL when not archived) and when.  Pruned after pankha.archive_log_retention.';

CREATE OR REPLACE FUNCTION pankha.drop_expired_partitions(OUT partition text, OUT archived_to text)
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
        SELECT t.partition, t.parent, t.range_start, t.range_end, t.bytes FROM pankha.time_partitions t
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
            INSERT INTO pankha.archived_partitions (partition, parent, range_start, range_end, bytes, archived_to)
            VALUES (partition, p.parent, p.range_start, p.range_end, p.bytes, archived_to);
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

CREATE FUNCTION pankha.prune_connections() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.connections c
     WHERE c.closed_at < now() - pankha.setting_interval('pankha.connection_retention', '30 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_connections() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_connections() IS
'Deletes the connections closed longer than pankha.connection_retention ago (open ones are kept) and returns how many.  The worker calls it.';

CREATE FUNCTION pankha.prune_alerts() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    keep interval := pankha.setting_interval('pankha.alert_retention', '180 days');
    n bigint;
BEGIN
    DELETE FROM pankha.alerts a
     WHERE a.state = 'resolved' AND a.resolved_at < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM pankha.alert_state s
     USING pankha.alert_rules r
     WHERE r.rule_id = s.rule_id AND s.pending_since IS NULL AND s.alert_id IS NULL
       AND coalesce(s.last_resolved_at, '-infinity') < now() - greatest(keep, r.cooldown);
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_alerts() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_alerts() IS
'Deletes the alerts resolved longer than pankha.alert_retention ago (firing ones are kept) and the alert state no rule needs any more; returns the alerts deleted.  The worker calls it.';

CREATE FUNCTION pankha.prune_agent_reports() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.agent_reports r
     WHERE r.received_at < now() - pankha.setting_interval('pankha.report_retention', '30 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_agent_reports() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_agent_reports() IS
'Deletes the status reports older than pankha.report_retention (agents silent that long) and returns how many.  The worker calls it.';

CREATE FUNCTION pankha.prune_archived_partitions() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.archived_partitions a
     WHERE a.dropped_at < now() - pankha.setting_interval('pankha.archive_log_retention', '730 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_archived_partitions() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_archived_partitions() IS
'Deletes the rows of pankha.archived_partitions older than pankha.archive_log_retention (the archive files themselves are the operator''s) and returns how many.  The worker calls it.';

CREATE OR REPLACE FUNCTION pankha.maintain() RETURNS void
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
'One maintenance pass of the background worker: persist liveness and mark agents online or offline, keep partitions ahead, roll up new frames, drop (and archive) partitions past retention, prune the audit log, expire and redeliver commands, judge alert rules, and prune finished commands, closed connections, resolved alerts, stale status reports and the record of dropped partitions past their pankha.*_retention.';
