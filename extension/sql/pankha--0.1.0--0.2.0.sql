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

-- privileges (issue 13: H3, M8, L7) ------------------------------------
-- The bridge's connection functions run as their owner, so that a login
-- role holding only pankha_bridge can run the bridge; the worker's
-- functions pin their search_path (pg_catalog, then pg_temp last: they name
-- every pankha object with its schema); every function is granted deliberately
-- or revoked from PUBLIC (regress/sql/privileges.sql holds the list).
ALTER FUNCTION pankha.connection_opened(text, text, text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.bridge_started(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.record_status(text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.agent_sync(text, text, text, jsonb, jsonb)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.agent_group(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_partition(timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_partitions(timestamptz, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.maintain() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_time_partition(text, text, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_rollup_partitions(timestamptz, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_horizon() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_hours(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_rebuild() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.retention(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.archive_partition(regclass, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.drop_expired_partitions() SET search_path = pg_catalog, pg_temp;

-- Privileges (issue 13).  A bridge connects as a login role that holds only
-- pankha_bridge, and that role has no privilege on the tables these write:
-- they run as their owner, like every other SECURITY DEFINER function (with
-- search_path pinned as before, pg_temp last), and only the bridge may
-- call them.
REVOKE ALL ON FUNCTION pankha.connection_opened(text, text, text),
                       pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint),
                       pankha.bridge_started(text),
                       pankha.record_status(text, jsonb),
                       pankha.agent_sync(text, text, text, jsonb, jsonb),
                       pankha.agent_group(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.connection_opened(text, text, text),
                          pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint),
                          pankha.bridge_started(text),
                          pankha.record_status(text, jsonb),
                          pankha.agent_sync(text, text, text, jsonb, jsonb),
                          pankha.agent_group(text)
    TO pankha_bridge;

-- Privileges (issue 13).  Functions are executable by PUBLIC unless revoked,
-- so each one is either revoked here or deliberately left to PUBLIC: only
-- pure functions of their arguments (the payload decoders) are.  The
-- worker's own functions and the helpers of SECURITY DEFINER functions
-- (they run as the owner) are the owner's alone; flush_liveness above all,
-- which changes shared memory that the offline check trusts.  Readers get
-- agent_liveness and ingest_stats in 20_credentials.sql, once the roles exist.
REVOKE ALL ON FUNCTION pankha._catalog_add(text[], "char"[], text[], text[], real[], real[]),
                       pankha._fan_status_code(text),
                       pankha._catalog_changed(),
                       pankha._forget_agent_readings(),
                       pankha.ensure_partition(timestamptz),
                       pankha.ensure_partitions(timestamptz, timestamptz),
                       pankha.agent_liveness(),
                       pankha.flush_liveness(),
                       pankha.ingest_stats(),
                       pankha.maintain()
    FROM PUBLIC;

-- Privileges (issue 13): what readers may see of 10_ingest.sql (the roles
-- exist only from this part on); the bridge reads it through pankha_reader.
REVOKE ALL ON FUNCTION pankha.check_agent_id(text), pankha.tokens_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.agent_liveness(), pankha.ingest_stats() TO pankha_reader;
GRANT SELECT ON pankha.latest, pankha.fan_statuses TO pankha_reader;

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.set_ui_user(text), pankha.audit_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.audit_retention() TO pankha_reader;

-- Privileges (issue 13): the checks are helpers of send_command.
REVOKE ALL ON FUNCTION pankha.check_agent(text),
                       pankha.check_command(text, text, jsonb),
                       pankha.check_keys(text, jsonb, text[]),
                       pankha.find_fan(text, jsonb)
    FROM PUBLIC;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.check_setting(text, jsonb, text),
                       pankha.check_settings(jsonb, text),
                       pankha.lock_settings(),
                       pankha.parse_scope(text),
                       pankha.scope_agents(text, text, text)
    FROM PUBLIC;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.check_profile_points(jsonb),
                       pankha.check_profile_tuning(real, real),
                       pankha.profile_parameters(text, jsonb, jsonb, jsonb)
    FROM PUBLIC;

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

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.retention(text) FROM PUBLIC;

-- Privileges (issue 13): the worker's and the owner's.
REVOKE ALL ON FUNCTION pankha.update_interval(text),
                       pankha.offline_threshold(text),
                       pankha.agent_in_group(text, text),
                       pankha.add_alert_rule(text, text, real, interval, interval, text, text, text, text, text),
                       pankha.alert_observations(),
                       pankha.alert_json(pankha.alerts)
    FROM PUBLIC;

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

-- M1, SQL side (issue 13): no command or settings change made through a
-- bridge lowers a fan's floor ------------------------------------------
CREATE FUNCTION pankha.session_is_admin() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN pg_catalog.pg_has_role(session_user,
    (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pankha'), 'USAGE');
COMMENT ON FUNCTION pankha.session_is_admin() IS
'Internal: true when the session user has the privileges of the extension''s owner (an administrator).';

REVOKE ALL ON FUNCTION pankha.session_is_admin() FROM PUBLIC;
CREATE FUNCTION pankha.check_settings_safety(agent_id text, settings jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    eff jsonb := pankha.effective_settings(agent_id);
BEGIN
    IF settings ? 'fans' AND settings -> 'fans' IS DISTINCT FROM coalesce(eff -> 'fans', '{}') THEN
        RAISE EXCEPTION 'parameters.fans differs from the fan limits of agent "%"', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Fan limits are taken from the catalog, where only pankha.set_fan_limits changes them.',
                  HINT = 'Leave "fans" out; the agent gets the catalog''s limits with its settings.';
    END IF;
    IF (settings -> 'failsafe_speed')::numeric < (eff -> 'failsafe_speed')::numeric THEN
        RAISE EXCEPTION 'parameters.failsafe_speed % is below the effective % of agent "%"',
            settings -> 'failsafe_speed', eff -> 'failsafe_speed', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A command may raise the failsafe speed, not lower it; an administrator lowers it with pankha.set_setting.';
    END IF;
    IF (settings -> 'emergency_temp')::numeric > (eff -> 'emergency_temp')::numeric THEN
        RAISE EXCEPTION 'parameters.emergency_temp % is above the effective % of agent "%"',
            settings -> 'emergency_temp', eff -> 'emergency_temp', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A command may lower the emergency temperature, not raise it; an administrator raises it with pankha.set_setting.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_settings_safety(text, jsonb) IS
'Internal: raises insufficient_privilege when settings sent to an agent carry fan limits other than the catalog''s, a lower failsafe_speed or a higher emergency_temp than its effective settings.';

REVOKE ALL ON FUNCTION pankha.check_settings_safety(text, jsonb) FROM PUBLIC;
CREATE OR REPLACE FUNCTION pankha.check_command(agent_id text, command_type text, parameters jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    speed jsonb;
    limit_key text;
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
    -- A fan's floor and ceiling come from the catalog (pankha.set_fan_limits)
    -- and the agent's own configuration; a command may repeat the catalog's
    -- limits (the profile functions do) but never carry others (M1).
    IF command_type IN ('set_fan_speed', 'apply_profile', 'restore_auto', 'emergency_stop')
       AND parameters ?| ARRAY['min_speed', 'max_speed', 'emergency_temp', 'failsafe_speed'] THEN
        IF parameters ? 'fan_id' THEN
            fan := pankha.find_fan(agent_id, parameters -> 'fan_id');
        END IF;
        SELECT l.key INTO limit_key
          FROM (VALUES ('min_speed', fan.min_speed), ('max_speed', fan.max_speed),
                       ('emergency_temp', fan.emergency_temp), ('failsafe_speed', NULL)) AS l(key, catalog)
         WHERE parameters ? l.key
           AND (fan.fan_id IS NULL OR jsonb_typeof(parameters -> l.key) IS DISTINCT FROM 'number'
                OR (parameters ->> l.key)::numeric IS DISTINCT FROM l.catalog::numeric)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'parameters.% may not be given in %', limit_key, command_type
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A fan''s safety limits are taken from the catalog, where only pankha.set_fan_limits changes them.';
        END IF;
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
        PERFORM pankha.check_settings_safety(agent_id, parameters);
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

CREATE OR REPLACE FUNCTION pankha.queue_settings_updates(before jsonb) RETURNS integer
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
        -- M1: only an administrator makes an agent less safe (a lower
        -- failsafe_speed, a higher emergency_temp); a bridge, on behalf of
        -- a dashboard, may only make it safer.  The change is undone.
        IF ((now_settings -> 'failsafe_speed')::numeric < (before -> agent -> 'failsafe_speed')::numeric
            OR (now_settings -> 'emergency_temp')::numeric > (before -> agent -> 'emergency_temp')::numeric)
           AND NOT pankha.session_is_admin() THEN
            RAISE EXCEPTION 'only an administrator may lower failsafe_speed or raise emergency_temp'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('For agent %s: failsafe_speed %s -> %s, emergency_temp %s -> %s.', agent,
                                      before -> agent -> 'failsafe_speed', now_settings -> 'failsafe_speed',
                                      before -> agent -> 'emergency_temp', now_settings -> 'emergency_temp'),
                      HINT = 'Run it in SQL as the owner of the extension.';
        END IF;
        IF now_settings IS DISTINCT FROM before -> agent THEN
            PERFORM pankha.send_command(agent, 'update_settings', now_settings, 'normal', interval '7 days');
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

REVOKE EXECUTE ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) FROM pankha_bridge;

-- M5, SQL side (issue 13): refusals counted per address and minute ------
-- M5 (issue 13): refusals that anyone can cause without a credential (a
-- refused WebSocket handshake, a request with a bad token) are counted, not
-- logged one row each, so that an anonymous flood cannot fill the disk:
-- one auth.failed row per client address and minute, whose details hold the
-- count, the count per kind and reason, and up to 8 of the agent ids
-- claimed.  agent_id is set while every refusal of the row claimed the same.
CREATE INDEX audit_log_refusals_idx ON pankha.audit_log (client_addr, logged_at)
    WHERE event = 'auth.failed';

CREATE FUNCTION pankha.audit_refusal(kind text, agent_id text, reason text, client_addr text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    addr text := coalesce(client_addr, nullif(current_setting('pankha_audit.client_addr', true), ''),
                          host(inet_client_addr()));
    minute timestamptz := date_trunc('minute', clock_timestamp());
    what text := kind || ': ' || coalesce(reason, 'refused');
    claimed text := left(audit_refusal.agent_id, 64);
    row_id bigint;
BEGIN
    -- One writer per address and minute, so that there is one row.
    PERFORM pg_advisory_xact_lock(hashtext('pankha.audit_refusal'),
                                  hashtext(coalesce(addr, '') || '@' || minute::text));
    SELECT a.audit_id INTO row_id FROM pankha.audit_log a
     WHERE a.event = 'auth.failed' AND a.client_addr IS NOT DISTINCT FROM addr
       AND a.logged_at >= minute AND a.logged_at < minute + interval '1 minute'
       AND a.details ? 'count'
     ORDER BY a.audit_id LIMIT 1;
    IF row_id IS NULL THEN
        PERFORM pankha.audit('auth.failed', claimed,
                             jsonb_build_object('count', 1, 'minute', minute,
                                                'reasons', jsonb_build_object(what, 1),
                                                'agent_ids', CASE WHEN claimed IS NULL THEN '[]'::jsonb
                                                                 ELSE jsonb_build_array(claimed) END),
                             addr);
        RETURN;
    END IF;
    UPDATE pankha.audit_log a
       SET agent_id = CASE WHEN a.agent_id IS NOT DISTINCT FROM claimed THEN a.agent_id END,
           details = a.details
               || jsonb_build_object('count', (a.details ->> 'count')::bigint + 1)
               || jsonb_build_object('reasons', a.details -> 'reasons'
                      || jsonb_build_object(what, coalesce((a.details -> 'reasons' ->> what)::bigint, 0) + 1))
               || CASE WHEN claimed IS NULL OR a.details -> 'agent_ids' ? claimed
                            OR jsonb_array_length(a.details -> 'agent_ids') >= 8 THEN '{}'::jsonb
                       ELSE jsonb_build_object('agent_ids', a.details -> 'agent_ids' || to_jsonb(claimed)) END
     WHERE a.audit_id = row_id;
END
$$;
COMMENT ON FUNCTION pankha.audit_refusal(text, text, text, text) IS
'Internal: counts one refused credential (kind, claimed agent id, reason) in the auth.failed row of its client address and minute, creating the row for the first.';

-- record_handshakes with its refusals counted by pankha.audit_refusal: what
-- a bridge calls for the WebSocket handshakes it answered from its copy of
-- the credentials (same arguments and result).
CREATE FUNCTION pankha.record_refusals(used_token_ids bigint[], failed_kinds text[],
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
        RAISE EXCEPTION 'the failed_* arrays of pankha.record_refusals differ in length'
            USING ERRCODE = 'array_subscript_error',
                  DETAIL = 'Each refused handshake has one element in each of them, NULL where unknown.';
    END IF;
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = ANY (used_token_ids) AND t.kind IN ('agent', 'ui');
    FOR f IN SELECT * FROM unnest(failed_kinds, failed_agent_ids, failed_tokens, failed_addrs)
                           AS u(kind, agent_id, token, client_addr)
             ORDER BY u.client_addr
    LOOP
        IF f.kind IS NULL OR f.kind NOT IN ('agent', 'ui') THEN
            RAISE EXCEPTION 'invalid kind "%" of a refused handshake', f.kind
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'kind is agent or ui.';
        END IF;
        found_token := pankha.check_token(f.kind, f.token);
        reason := found_token.reason;
        IF found_token.token_id IS NOT NULL THEN
            IF f.kind = 'agent' AND NOT EXISTS (SELECT FROM pankha.tokens t
                                                WHERE t.token_id = found_token.token_id
                                                  AND t.agent_id = f.agent_id) THEN
                reason := 'token of another agent';
            ELSE
                reason := 'token not yet known to the bridge';
            END IF;
        END IF;
        PERFORM pankha.audit_refusal(f.kind, CASE WHEN f.kind = 'agent' THEN f.agent_id END,
                                     reason, f.client_addr);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.record_refusals(bigint[], text[], text[], text[], text[]) IS
'For bridges: pankha.record_handshakes with the refusals counted per client address and minute (one auth.failed row each, with a count) instead of one row per refusal; returns how many refusals it counted.';

-- authenticate_ui for requests anyone can send (HTTP API): a bad token is
-- counted by pankha.audit_refusal instead of logged one row each.
CREATE FUNCTION pankha.authenticate_ui_request(token text, client_addr text DEFAULT NULL)
RETURNS TABLE (user_name text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
BEGIN
    found_token := pankha.check_token('ui', token);
    IF found_token.token_id IS NULL THEN
        PERFORM pankha.audit_refusal('ui', NULL, found_token.reason, client_addr);
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = found_token.token_id
    RETURNING t.user_name, t.role;
END
$$;
COMMENT ON FUNCTION pankha.authenticate_ui_request(text, text) IS
'pankha.authenticate_ui with a refused token counted per client address and minute (pankha.audit_refusal) instead of one audit row per request.';

REVOKE ALL ON FUNCTION pankha.audit_refusal(text, text, text, text),
                       pankha.record_refusals(bigint[], text[], text[], text[], text[]),
                       pankha.authenticate_ui_request(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.record_refusals(bigint[], text[], text[], text[], text[]),
                          pankha.authenticate_ui_request(text, text)
    TO pankha_bridge;


-- L8 (issue 13): the archive is on disk before its partition is dropped --
CREATE OR REPLACE FUNCTION pankha.archive_partition(part regclass, directory text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part);
    target text;
    quoted text;
    quoted_dir text;
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
    EXECUTE format('COPY %s TO PROGRAM %L WITH (FORMAT csv, HEADER)', part,
                   format('gzip -c > %s.part && sync %s.part && mv -f %s.part %s && sync %s',
                          quoted, quoted, quoted, quoted, quoted_dir));
    RETURN target;
END
$$;
