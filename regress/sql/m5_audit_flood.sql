-- M5 of the 2026-12 review (issue 13), SQL side: refusals anyone can cause
-- without a credential are counted in one auth.failed row per client
-- address and minute, not written one row each, so an anonymous flood of
-- handshakes or bad-token requests cannot fill the disk.  The bridge's
-- functions count them so: pankha.record_handshakes (WebSocket handshakes)
-- and pankha.authenticate_ui (HTTP requests).
\i sql/queue_helpers.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_m5_bridge;
RESET client_min_messages;
CREATE ROLE regress_m5_bridge LOGIN IN ROLE pankha_bridge;
SELECT pankha.register_agent('m5-a', 'A') AS token_a \gset
SELECT pankha.create_ui_token('m5-viewer', 'viewer') AS token_ui \gset
SELECT token_id AS ui_token_id FROM pankha.tokens WHERE user_name = 'm5-viewer' \gset
SELECT count(*) AS rows_before FROM pankha.audit_log \gset

SET SESSION AUTHORIZATION regress_m5_bridge;
-- 1,000 refused handshakes from one address with random agent ids, 500
-- from another, in three calls, and one accepted handshake
SELECT pankha.record_handshakes('{}', array_fill('agent'::text, ARRAY[600]),
           ARRAY(SELECT 'flood-' || i FROM generate_series(1, 600) i),
           array_fill('pka_x'::text, ARRAY[600]), array_fill('198.51.100.7'::text, ARRAY[600])) AS counted;
SELECT pankha.record_handshakes(ARRAY[:ui_token_id]::bigint[], array_fill('agent'::text, ARRAY[400]),
           ARRAY(SELECT 'flood-' || i FROM generate_series(601, 1000) i),
           array_fill(:'token_a'::text, ARRAY[400]), array_fill('198.51.100.7'::text, ARRAY[400])) AS counted;
SELECT pankha.record_handshakes('{}', array_fill('ui'::text, ARRAY[500]), array_fill(NULL::text, ARRAY[500]),
           array_fill('pku_' || repeat('A', 64), ARRAY[500]), array_fill('2001:db8::1'::text, ARRAY[500])) AS counted;
-- 300 HTTP requests with a bad token, and one with a good one
SELECT count(*) AS refused_requests FROM generate_series(1, 300) i,
       LATERAL pankha.authenticate_ui('pku_bad' || left(i::text, 0), '2001:db8::1') u;
SELECT user_name, role FROM pankha.authenticate_ui(:'token_ui', '2001:db8::1');
-- the same agent id every time keeps it in agent_id
SELECT pankha.record_handshakes('{}', '{agent,agent,agent}', '{m5-a,m5-a,m5-a}',
           '{pka_x,pka_y,pka_z}', '{192.0.2.50,192.0.2.50,192.0.2.50}') AS counted;
-- bad input still says what is wrong, and counts nothing
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{agent}', '{}', '{}', '{}')$$);
SELECT pg_temp.err($$SELECT pankha.record_handshakes('{}', '{enrollment}', '{x}', '{x}', '{x}')$$);
-- and the bridge still cannot write the log itself
SELECT pg_temp.err($$SELECT pankha.audit_refusal('agent', 'x', 'forged', '192.0.2.1')$$);
RESET SESSION AUTHORIZATION;

-- 2,103 refusals, at most one row per address and minute (a run that
-- crosses a minute boundary has two).
SELECT client_addr, count(*) <= 2 AS at_most_two_rows, sum((details ->> 'count')::bigint) AS refusals,
       max(agent_id) AS agent_id
FROM pankha.audit_log WHERE audit_id > :rows_before AND event = 'auth.failed'
GROUP BY client_addr ORDER BY client_addr;
SELECT count(*) - :rows_before <= 6 AS rows_bounded FROM pankha.audit_log;
-- what each row says: counts per kind and reason, a few of the agent ids
SELECT client_addr, r.key AS reason, sum(r.value::bigint) AS refusals
FROM pankha.audit_log a, jsonb_each_text(a.details -> 'reasons') r
WHERE a.audit_id > :rows_before AND a.event = 'auth.failed'
GROUP BY 1, 2 ORDER BY 1, 2;
SELECT max(jsonb_array_length(details -> 'agent_ids')) AS agent_ids_kept
FROM pankha.audit_log WHERE audit_id > :rows_before AND client_addr = '198.51.100.7';
-- the good tokens were used
SELECT kind, last_used_at IS NOT NULL AS used FROM pankha.tokens WHERE kind IN ('agent', 'ui') ORDER BY kind;
-- never two rows for one address and minute (concurrent callers:
-- regress/specs/m5_refusal_race.spec)
SELECT count(*) AS duplicate_minutes FROM (
    SELECT client_addr, date_trunc('minute', logged_at) FROM pankha.audit_log
    WHERE audit_id > :rows_before AND event = 'auth.failed'
    GROUP BY 1, 2 HAVING count(*) > 1) d;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
DROP ROLE regress_m5_bridge;
