-- What bridges need to answer WebSocket handshakes without a query each:
-- pankha.bridge_credentials() (the live agent and dashboard tokens, as
-- digests), NOTIFY pankha_credentials naming every token that changes, and
-- pankha.record_handshakes() (last_used_at and the audit of refusals).
\i sql/queue_helpers.psql

SELECT pankha.register_agent('cr-a', 'A') AS tok_a \gset
SELECT pankha.register_agent('cr-b', 'B') AS tok_b \gset
SELECT pankha.create_ui_token('uma', 'operator') AS tok_uma \gset
SELECT pankha.create_enrollment_key('k') AS key1 \gset

-- Selectors are random: tests name them by their owner.
CREATE TEMP TABLE names (selector text PRIMARY KEY, label text);
CREATE FUNCTION pg_temp.learn_names() RETURNS void LANGUAGE sql AS $$
INSERT INTO names
SELECT selector, kind || ':' || coalesce(agent_id, user_name, comment) || '#' ||
       row_number() OVER (PARTITION BY kind, coalesce(agent_id, user_name, comment) ORDER BY token_id)
FROM pankha.tokens ON CONFLICT DO NOTHING
$$;
SELECT pg_temp.learn_names();
CREATE FUNCTION pg_temp.named(path text) RETURNS SETOF text LANGUAGE sql AS $$
SELECT coalesce(n.label, p.payload)
FROM (SELECT substring(line FROM 'payload "([^"]*)"') AS payload, k
      FROM pg_temp.notifications(path) WITH ORDINALITY AS l(line, k)
      WHERE line LIKE '%"pankha_credentials"%') p
LEFT JOIN names n ON n.selector = p.payload
ORDER BY p.k
$$;

-- The list: agent and dashboard tokens, never enrollment keys, with the
-- digest of the token and its owner.
SET ROLE pankha_bridge;
SELECT count(*) AS listed_to_the_bridge FROM pankha.bridge_credentials();
RESET ROLE;
SELECT n.label, c.kind, c.agent_id, c.user_name, c.role, c.expires_at,
       c.token_hash = sha256(convert_to(CASE c.agent_id WHEN 'cr-a' THEN :'tok_a' WHEN 'cr-b' THEN :'tok_b'
                                                        ELSE :'tok_uma' END, 'UTF8')) AS digest_matches,
       c.token_id = t.token_id AS token_id_matches
FROM pankha.bridge_credentials() c JOIN names n USING (selector) JOIN pankha.token_list t USING (token_id)
ORDER BY 1;
SELECT count(*) AS by_selector FROM pankha.bridge_credentials(ARRAY[substr(:'tok_a', 5, 16), 'AAAAAAAAAAAAAAAA']);
SELECT count(*) AS no_selectors FROM pankha.bridge_credentials('{}');

-- Every change of a credential is announced with its selector.
LISTEN pankha_credentials;
\o :notify_file
SELECT pankha.register_agent('cr-c', 'C') AS tok_c \gset
\o
SELECT pg_temp.learn_names();
SELECT * FROM pg_temp.named(:'notify_file') AS registered;
\o :notify_file
SELECT pankha.rotate_agent_token('cr-b') AS tok_b2 \gset
\o
SELECT pg_temp.learn_names();
SELECT * FROM pg_temp.named(:'notify_file') AS rotated;
SELECT token_id AS uma_id FROM pankha.tokens WHERE user_name = 'uma' \gset
\o :notify_file
SELECT pankha.revoke_token(:uma_id) \gset
\o
SELECT * FROM pg_temp.named(:'notify_file') AS ui_revoked;
\o :notify_file
SELECT pankha.create_ui_token('uli', 'viewer') AS tok_uli \gset
\o
SELECT pg_temp.learn_names();
SELECT * FROM pg_temp.named(:'notify_file') AS ui_created;
\o :notify_file
UPDATE pankha.tokens SET expires_at = now() - interval '1 second' WHERE user_name = 'uli';
\o
SELECT * FROM pg_temp.named(:'notify_file') AS expired;
\o :notify_file
DELETE FROM pankha.agents WHERE agent_id = 'cr-c';
\o
SELECT * FROM pg_temp.named(:'notify_file') AS agent_deleted;
-- Bookkeeping and enrollment keys are not announced; the agent token an
-- enrollment issues is.
\o :notify_file
SELECT pankha.authenticate_agent('cr-a', :'tok_a') IS NOT NULL AS authenticated \gset
SELECT pankha.create_enrollment_key('k2') IS NOT NULL AS key_made \gset
\o
SELECT count(*) AS bookkeeping_notifications FROM pg_temp.named(:'notify_file');
\o :notify_file
SELECT pankha.enroll_agent(:'key1', 'cr-e', 'E') AS tok_e \gset
\o
SELECT pg_temp.learn_names();
SELECT * FROM pg_temp.named(:'notify_file') AS enrolled;
-- Several changes in one transaction announce each token once.
\o :notify_file
BEGIN;
UPDATE pankha.tokens SET comment = 'x' WHERE agent_id = 'cr-a';
UPDATE pankha.tokens SET expires_at = now() + interval '1 day' WHERE agent_id = 'cr-a';
UPDATE pankha.tokens SET expires_at = NULL WHERE agent_id = 'cr-a';
COMMIT;
\o
SELECT * FROM pg_temp.named(:'notify_file') AS changed_twice;

-- What is live now: the rotated, revoked, expired and deleted are gone.
SELECT n.label FROM pankha.bridge_credentials() c JOIN names n USING (selector) ORDER BY 1;
SELECT count(*) AS gone FROM pankha.bridge_credentials(
    ARRAY(SELECT selector FROM names WHERE label IN ('agent:cr-b#1', 'ui:uma#1', 'ui:uli#1', 'agent:cr-c#1')));

-- record_handshakes: last_used_at of the tokens used, each refusal counted
-- with the reason authenticate_agent/authenticate_ui give, in one auth.failed
-- row per client address and minute (M5; all addresses differ here).
UPDATE pankha.tokens SET last_used_at = NULL;
SELECT max(audit_id) AS audit_mark FROM pankha.audit_log \gset
SELECT array_agg(token_id) AS used_ids FROM pankha.tokens WHERE agent_id = 'cr-a' \gset
SET ROLE pankha_bridge;
SELECT pankha.record_handshakes(
    :'used_ids',
    ARRAY['agent', 'agent', 'agent', 'agent', 'agent', 'agent', 'agent', 'ui', 'ui', 'ui', 'agent'],
    ARRAY['cr-a', 'cr-a', 'cr-b', 'cr-a', 'cr-e', 'nobody', 'cr-b', NULL, NULL, NULL, E'bad\nid'],
    ARRAY[NULL, 'Bearer', :'tok_b', 'pka_' || repeat('A', 64), :'tok_e', :'tok_a', :'tok_b2',
          :'tok_uma', :'tok_uli', :'tok_a', NULL],
    ARRAY['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5', '192.0.2.6', '192.0.2.7',
          '192.0.2.8', '192.0.2.9', '192.0.2.10', NULL]) AS audited;
RESET ROLE;
SELECT agent_id, client_addr, details - 'minute' AS details FROM pankha.audit_log
WHERE audit_id > :audit_mark ORDER BY audit_id;
SELECT kind, coalesce(agent_id, user_name) AS owner, last_used_at IS NOT NULL AS used
FROM pankha.tokens WHERE kind <> 'enrollment' ORDER BY token_id;
SELECT pankha.record_handshakes('{}', '{}', '{}', '{}', '{}') AS nothing;
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{agent}', '{}', '{}', '{}')$$);
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{enrollment}', '{x}', '{x}', '{x}')$$);
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{NULL}', '{x}', '{x}', '{x}')$$);
-- nothing was audited by the failed calls
SELECT count(*) AS audited_after FROM pankha.audit_log WHERE audit_id > :audit_mark;

-- TRUNCATE says "reload everything".
\o :notify_file
TRUNCATE pankha.tokens;
\o
SELECT * FROM pg_temp.named(:'notify_file') AS truncated;
UNLISTEN *;

-- Only the bridge role (and the owner) may call them.
SET ROLE pankha_reader;
SELECT pg_temp.err($$SELECT * FROM pankha.bridge_credentials()$$);
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{}', '{}', '{}', '{}')$$);
RESET ROLE;

SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
