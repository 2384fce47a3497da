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
SET search_path = pg_catalog, pg_temp
RETURN CASE parent
    WHEN 'readings' THEN pankha.setting_interval('pankha.raw_retention', '7 days')
    WHEN 'rollup_1m' THEN greatest(pankha.setting_interval('pankha.rollup_1m_retention', '90 days'),
                                   pankha.setting_interval('pankha.raw_retention', '7 days'))
    WHEN 'rollup_1h' THEN pankha.setting_interval('pankha.rollup_1h_retention', '730 days')
END;
COMMENT ON FUNCTION pankha.retention(text) IS
'How long the partitions of readings, rollup_1m or rollup_1h are kept, from the pankha.*_retention settings.';

-- Write one partition to the archive directory as gzip-compressed CSV.
-- The file appears under its final name only when complete, and both the
-- file and the directory entry are on disk (sync, coreutils' fsync of
-- the given file or directory) before COPY returns, so the partition is
-- never dropped while an OS crash could still take its archive (L8).
CREATE FUNCTION pankha.archive_partition(part regclass, directory text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part);
    target text;
    quoted text;
    quoted_dir text;
    tp record;
    source text := part::text;
BEGIN
    IF directory IS NULL OR directory !~ '^/' THEN
        RAISE EXCEPTION 'pankha.archive_directory must be an absolute path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is "%s".', directory);
    END IF;
    target := rtrim(directory, '/') || '/' || name || '.csv.gz';
    -- Single-quote the path for the shell: ' becomes '"'"'.
    quoted := '''' || replace(target, '''', '''"''"''') || '''';
    quoted_dir := '''' || replace(coalesce(nullif(rtrim(directory, '/'), ''), '/'), '''', '''"''"''') || '''';
    -- A day of frames is archived whole: its raw rows and its compressed hours.
    SELECT t.parent, t.range_start, t.range_end INTO tp FROM pankha.time_partitions t
     WHERE t.partition = part;
    IF tp.parent = 'readings' THEN
        source := format('(SELECT r.ts, r.received_at, r.agent_id, r.payload, r.agent_ts FROM %s r '
                         'UNION ALL SELECT u.ts, u.received_at, c.agent_id, u.payload, NULL '
                         'FROM pankha.frames_cold c CROSS JOIN LATERAL pankha.cold_frames(c.packed) u '
                         'WHERE c.hour >= %L AND c.hour < %L)', part, tp.range_start, tp.range_end);
    END IF;
    EXECUTE format('COPY %s TO PROGRAM %L WITH (FORMAT csv, HEADER)', source,
                   format('gzip -c > %s.part && sync %s.part && mv -f %s.part %s && sync %s',
                          quoted, quoted, quoted, quoted, quoted_dir));
    RETURN target;
END
$$;
REVOKE ALL ON FUNCTION pankha.archive_partition(regclass, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.archive_partition(regclass, text) IS
'Write a partition to directory/<partition>.csv.gz (gzip-compressed CSV with a header) with COPY TO PROGRAM, as the server user; a day of pankha.readings is written with its compressed frames.  Returns the file name; raises an error when it could not.';

-- The partitions dropped past their retention, where each was archived to
-- (NULL when pankha.archive_directory was empty), for finding a day's data
-- again; rows older than pankha.archive_log_retention are pruned.
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

-- Drop the partitions past their retention, archiving each first when
-- pankha.archive_directory is set.  A partition that cannot be archived or
-- locked is kept, with a warning, and tried again on the next pass.
CREATE FUNCTION pankha.drop_expired_partitions(OUT partition text, OUT archived_to text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
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
            IF p.parent = 'readings' THEN
                DELETE FROM pankha.frames_cold c
                 WHERE c.hour >= p.range_start AND c.hour < p.range_end;
            END IF;
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
REVOKE ALL ON FUNCTION pankha.drop_expired_partitions() FROM PUBLIC;
COMMENT ON FUNCTION pankha.drop_expired_partitions() IS
'Drop the time partitions past their retention (archived first when pankha.archive_directory is set), raw ones only once their frames are rolled up and with their compressed frames; returns what was dropped and where it was archived.  The worker calls it.';

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.retention(text) FROM PUBLIC;
-- ---------------------------------------------------------------------
-- Tables that grow row by row are pruned by age, each after its own
-- pankha.*_retention setting (see extension/src/worker.c), by the worker's
-- maintenance pass.  What is still in use is never deleted: unfinished
-- commands, open connections, firing alerts, the alert state of a rule's
-- cooldown.  The audit log has its own retention (pankha.audit_retention()).
-- ---------------------------------------------------------------------

-- Closed connections older than pankha.connection_retention.
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

-- Resolved alerts older than pankha.alert_retention, and the per-series
-- state nothing needs any more: no condition pending, no open alert, and
-- the last alert resolved longer ago than both the retention and the
-- rule's cooldown (so a cooldown is never cut short).
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

-- Status reports of agents that have not sent one for
-- pankha.report_retention (an agent keeps only its latest report anyway).
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

-- The record of dropped partitions older than pankha.archive_log_retention.
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
