-- Credentials: agent tokens, enrollment keys, dashboard tokens, revocation,
-- authentication and the roles.
\i sql/queue_helpers.psql

-- Registration returns a token once; only its selector and digest are kept.
SELECT pankha.register_agent('host-a', 'Host A', 'a.example', '{"fans": 3}') AS token_a \gset
SELECT pankha.register_agent('host-b', 'Host B') AS token_b \gset
SELECT :'token_a' ~ '^pka_[A-Za-z0-9_-]{64}$' AS well_formed, :'token_a' <> :'token_b' AS distinct_tokens;
SELECT t.kind, t.agent_id, t.token_hash = sha256(convert_to(:'token_a', 'UTF8')) AS digest_matches,
       strpos(:'token_a', t.selector) = 5 AS selector_is_prefix,
       -- the secret part, as text or as the hex a bytea column shows, in no column of the row
       strpos(row_to_json(t)::text, substr(:'token_a', 21)) = 0
       AND strpos(row_to_json(t)::text, encode(convert_to(substr(:'token_a', 21), 'UTF8'), 'hex')) = 0
           AS secret_not_stored,
       -- nor in the audit log
       NOT EXISTS (SELECT 1 FROM pankha.audit_log l
                    WHERE strpos(row_to_json(l)::text, substr(:'token_a', 21)) > 0) AS secret_not_audited
FROM pankha.tokens t WHERE t.agent_id = 'host-a';
SELECT agent_id, name, hostname, capabilities, status FROM pankha.agents ORDER BY agent_id;

-- Invalid registrations.
SELECT pg_temp.err($$SELECT pankha.register_agent('', 'x')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent(repeat('a', 65), 'x')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent(E'bad\nid', 'x')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-c', '')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-c', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-c', 'C', E'h\tx')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-c', 'C', NULL, '[1]')$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-c', 'C', NULL, jsonb_build_object('x', repeat('y', 70000)))$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('host-a', 'Again')$$);
SELECT count(*) AS agents FROM pankha.agents;

-- Authentication of agents.
SELECT pankha.authenticate_agent('host-a', :'token_a') AS ok_a,
       pankha.authenticate_agent('host-b', :'token_b') AS ok_b;
SELECT pankha.authenticate_agent('host-b', :'token_a') AS token_of_other_agent,
       pankha.authenticate_agent('host-a', 'pka_' || repeat('A', 64)) AS unknown_token,
       pankha.authenticate_agent('host-a', left(:'token_a', 67) || CASE WHEN right(:'token_a', 1) = 'x' THEN 'y' ELSE 'x' END) AS last_char_changed,
       pankha.authenticate_agent('host-a', 'Bearer') AS malformed,
       pankha.authenticate_agent('host-a', NULL) AS no_token,
       pankha.authenticate_agent('nobody', :'token_a', '192.0.2.7') AS unknown_agent;
-- counted per client address and minute (M5): the five without an address share a row
SELECT event, agent_id, client_addr, details - 'minute' AS details FROM pankha.audit_log
WHERE event = 'auth.failed' ORDER BY audit_id;

-- Revocation: the next authentication fails, and bridges are told.
LISTEN pankha_agent;
SELECT token_id AS token_a_id FROM pankha.tokens WHERE agent_id = 'host-a' \gset
\o :notify_file
SELECT pankha.revoke_token(:token_a_id) AS revoked \gset
\o
SELECT :'revoked' AS revoked;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pankha.authenticate_agent('host-a', :'token_a') AS after_revoke;
SELECT pankha.revoke_token(:token_a_id) AS revoked_twice;
SELECT pg_temp.err($$SELECT pankha.revoke_token(999999)$$);

-- Rotation revokes every live token of the agent and issues a new one.
\o :notify_file
SELECT pankha.rotate_agent_token('host-b') AS token_b2 \gset
\o
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pankha.authenticate_agent('host-b', :'token_b') AS old_token,
       pankha.authenticate_agent('host-b', :'token_b2') AS new_token;
SELECT pg_temp.err($$SELECT pankha.rotate_agent_token('nobody')$$);
SELECT pg_temp.err($$SELECT pankha.revoke_agent_tokens('nobody')$$);
\o :notify_file
SELECT pankha.revoke_agent_tokens('host-b') AS revoked_b \gset
\o
SELECT :revoked_b AS revoked_b;
SELECT * FROM pg_temp.notifications(:'notify_file');
UNLISTEN *;

-- Enrollment keys.
SELECT pankha.create_enrollment_key('rack 4', '1 hour', 2) AS key1 \gset
SELECT :'key1' ~ '^pke_[A-Za-z0-9_-]{64}$' AS well_formed;
SELECT pankha.enroll_agent(:'key1', 'host-c', 'Host C', 'c.example', NULL, '198.51.100.1') AS token_c \gset
SELECT pankha.authenticate_agent('host-c', :'token_c') AS enrolled_agent_authenticates;
SELECT pg_temp.err(format('SELECT pankha.enroll_agent(%L, %L, %L)', 'pke_' || repeat('x', 64), 'host-d', 'D'));
SELECT pg_temp.err(format('SELECT pankha.enroll_agent(%L, %L, %L)', :'token_c', 'host-d', 'D'));
SELECT pg_temp.err(format('SELECT pankha.enroll_agent(%L, %L, %L)', :'key1', 'host-c', 'C again'));
SELECT pg_temp.err(format('SELECT pankha.enroll_agent(%L, %L, %L)', :'key1', '', 'D'));
-- The failed attempts above rolled back with their errors; try_enroll_agent
-- returns NULL instead, so its failure stays in the audit log.
SELECT pankha.try_enroll_agent('pke_nonsense', 'host-e', 'E', NULL, NULL, '203.0.113.9') AS bad_key;
SELECT event, agent_id, client_addr, details FROM pankha.audit_log
WHERE event = 'auth.failed' AND details ->> 'kind' = 'enrollment';
SELECT pankha.enroll_agent(:'key1', 'host-d', 'Host D') IS NOT NULL AS second_use;
SELECT pg_temp.err(format('SELECT pankha.enroll_agent(%L, %L, %L)', :'key1', 'host-e', 'E'));
SELECT use_count, max_uses, active FROM pankha.token_list WHERE kind = 'enrollment';
SELECT pg_temp.err($$SELECT pankha.create_enrollment_key('x', '-1 hour')$$);
SELECT pg_temp.err($$SELECT pankha.create_enrollment_key('x', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.create_enrollment_key('x', '1 day', 0)$$);
-- An expired key: its expiry is moved into the past.
SELECT pankha.create_enrollment_key('old') AS key2 \gset
UPDATE pankha.tokens SET expires_at = now() - interval '1 second' WHERE comment = 'old';
SELECT pankha.try_enroll_agent(:'key2', 'host-f', 'F') AS expired_key;
SELECT details FROM pankha.audit_log ORDER BY audit_id DESC LIMIT 1;

-- Dashboard tokens.
SELECT pankha.create_ui_token('alice', 'admin') AS ui_alice \gset
SELECT pankha.create_ui_token('bob', 'viewer') AS ui_bob \gset
SELECT :'ui_alice' ~ '^pku_[A-Za-z0-9_-]{64}$' AS well_formed;
SELECT * FROM pankha.authenticate_ui(:'ui_alice');
SELECT * FROM pankha.authenticate_ui(:'ui_bob', '10.0.0.5');
SELECT * FROM pankha.authenticate_ui(:'token_c');
SELECT * FROM pankha.authenticate_ui('pku_' || repeat('-', 64));
SELECT * FROM pankha.authenticate_ui(NULL);
SELECT pg_temp.err($$SELECT pankha.create_ui_token('carol', 'root')$$);
SELECT pg_temp.err($$SELECT pankha.create_ui_token('', 'viewer')$$);
SELECT pg_temp.err($$SELECT pankha.create_ui_token('carol', NULL)$$);
SELECT token_id AS bob_id FROM pankha.tokens WHERE user_name = 'bob' \gset
SELECT pankha.revoke_token(:bob_id);
SELECT * FROM pankha.authenticate_ui(:'ui_bob');
SELECT kind, agent_id, user_name, role, active FROM pankha.token_list ORDER BY token_id;

-- Everything above is in the audit log.
SELECT event, agent_id, details - 'token_id' - 'expires_at' - 'enrollment_key_id' AS details
FROM pankha.audit_log WHERE event <> 'auth.failed' ORDER BY audit_id;

-- Roles: the bridge authenticates and enrolls but cannot write tables or
-- read token digests; nobody else can call the credential functions.
SET ROLE pankha_bridge;
SELECT pankha.authenticate_agent('host-c', :'token_c') AS as_bridge;
SELECT count(*) AS ui_rows FROM pankha.authenticate_ui(:'ui_alice');
SELECT pg_temp.err($$SELECT pankha.register_agent('host-x', 'X')$$);
SELECT pg_temp.err($$SELECT pankha.create_ui_token('mallory', 'admin')$$);
SELECT pg_temp.err($$SELECT token_hash FROM pankha.tokens$$);
SELECT pg_temp.err($$INSERT INTO pankha.agents (agent_id, name) VALUES ('host-x', 'X')$$);
SELECT count(*) AS visible_tokens FROM pankha.token_list;
RESET ROLE;
SET ROLE pankha_reader;
SELECT pg_temp.err($$SELECT pankha.authenticate_agent('host-c', 'x')$$);
SELECT pg_temp.err($$SELECT pankha.enroll_agent('x', 'host-x', 'X')$$);
SELECT count(*) AS reader_sees_agents FROM pankha.agents;
RESET ROLE;
-- Every SECURITY DEFINER function of the extension pins its search_path,
-- with pg_temp last: left out, pg_temp is searched first for tables, so a
-- caller's temporary table could stand in for an unqualified name (audit 16).
SELECT p.proname, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pankha'
WHERE p.prosecdef AND (p.proconfig IS NULL OR NOT p.proconfig && ARRAY['search_path=pg_catalog, pankha, pg_temp', 'search_path=pg_catalog, pg_temp'])
ORDER BY 1;

-- Token generation draws fresh random bytes every time.
SELECT count(DISTINCT pankha.random_token('x_')) AS distinct_of_1000,
       min(length(pankha.random_token('x_'))) AS length
FROM generate_series(1, 1000);
SELECT pankha.digest_equal('\x0102', '\x0102') AS same, pankha.digest_equal('\x0102', '\x0103') AS differ,
       pankha.digest_equal('\x01', '\x0102') AS shorter;
SELECT pg_temp.err($$SELECT pankha.random_token(repeat('p', 17))$$);

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
