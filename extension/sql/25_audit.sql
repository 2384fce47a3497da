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
    claimed text := audit_refusal.agent_id;
    row_id bigint;
BEGIN
    -- An id the extension would refuse anywhere else (too long, control
    -- characters) is not written to the log: the refusal is counted as one
    -- of an invalid agent id, as the bridge refuses such ids at the door.
    IF claimed IS NOT NULL AND NOT pankha.valid_id(claimed) THEN
        claimed := NULL;
        what := kind || ': invalid agent id';
    END IF;
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

-- pankha.record_handshakes, pankha.authenticate_agent and
-- pankha.authenticate_ui (20_credentials.sql) count their refusals with it.
REVOKE ALL ON FUNCTION pankha.audit_refusal(text, text, text, text) FROM PUBLIC;

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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.set_ui_user(text), pankha.audit_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.audit_retention() TO pankha_reader;
