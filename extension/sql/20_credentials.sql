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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
SET search_path = pg_catalog, pankha, pg_temp
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
    PERFORM pankha.audit_refusal('agent', agent_id, reason, client_addr);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pankha.authenticate_agent(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.authenticate_agent(text, text, text) IS
'The agent id when the token is a live token of that agent, else NULL (and the failure is counted in the auth.failed row of the client address and minute).';

CREATE FUNCTION pankha.authenticate_ui(token text, client_addr text DEFAULT NULL)
RETURNS TABLE (user_name text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
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
REVOKE ALL ON FUNCTION pankha.authenticate_ui(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.authenticate_ui(text, text) IS
'The dashboard user and role for a live ui token; no row otherwise (the failure counted in the auth.failed row of the client address and minute).';

-- What a bridge needs to answer WebSocket handshakes without a query of
-- its own: the live agent and dashboard tokens as selector and digest
-- (never the tokens).  A bridge loads them whole when it connects, and
-- again by selector when NOTIFY pankha_credentials names one.
CREATE FUNCTION pankha.bridge_credentials(selectors text[] DEFAULT NULL)
RETURNS TABLE (selector text, kind text, token_id bigint, token_hash bytea,
               agent_id text, user_name text, role text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
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
-- tokens used get last_used_at, and each refusal is counted, with the reason
-- those functions would have given, in the auth.failed row of its client
-- address and minute (pankha.audit_refusal, M5).
CREATE FUNCTION pankha.record_handshakes(used_token_ids bigint[], failed_kinds text[],
                                         failed_agent_ids text[], failed_tokens text[],
                                         failed_addrs text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
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
            -- live in the database: another agent's, or newer than the bridge's copy
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
REVOKE ALL ON FUNCTION pankha.record_handshakes(bigint[], text[], text[], text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.record_handshakes(bigint[], text[], text[], text[], text[]) IS
'For bridges: sets last_used_at of the tokens used in accepted handshakes and counts each refused one (kind agent or ui, agent id, presented token, client address) as authenticate_agent or authenticate_ui would: one auth.failed row per client address and minute, with a count; returns how many refusals it counted.';

GRANT EXECUTE ON FUNCTION pankha.authenticate_agent(text, text, text),
                          pankha.authenticate_ui(text, text),
                          pankha.bridge_credentials(text[]),
                          pankha.record_handshakes(bigint[], text[], text[], text[], text[]),
                          pankha.enroll_agent(text, text, text, text, jsonb, text),
                          pankha.try_enroll_agent(text, text, text, text, jsonb, text)
    TO pankha_bridge;
GRANT SELECT ON pankha.token_list TO pankha_reader;

-- Privileges (issue 13): what readers may see of 10_ingest.sql (the roles
-- exist only from this part on); the bridge reads it through pankha_reader.
REVOKE ALL ON FUNCTION pankha.check_agent_id(text), pankha.tokens_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.agent_liveness(), pankha.ingest_stats() TO pankha_reader;
GRANT SELECT ON pankha.latest, pankha.fan_statuses TO pankha_reader;
