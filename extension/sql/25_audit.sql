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

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.set_ui_user(text), pankha.audit_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.audit_retention() TO pankha_reader;
