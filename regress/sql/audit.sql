-- The audit log: actors, direct table writes, retention, and who may read
-- or change it.
\i sql/queue_helpers.psql

-- The actor: database role, application_name, client address, and the
-- dashboard user when a bridge passes one (parameter or transaction
-- setting).
SET application_name = 'pankha-regress';
SELECT pankha.register_agent('srv-1', 'Server 1') IS NOT NULL AS registered;
BEGIN;
SELECT set_config('pankha_audit.ui_user', 'carol', true) AS ui_user_for_this_transaction,
       set_config('pankha_audit.client_addr', '198.51.100.23', true) AS client_for_this_transaction;
SELECT pankha.create_group('lab');
COMMIT;
SELECT pankha.create_group('lab-2', NULL, 'dave');
SELECT pankha.create_group('lab-3');
SELECT event, agent_id, db_role, application_name, ui_user,
       CASE WHEN client_addr IS NOT DISTINCT FROM host(inet_client_addr()) THEN 'this connection'
            ELSE client_addr END AS client_addr
FROM pankha.audit_log ORDER BY audit_id;
RESET application_name;

-- Direct writes to configuration tables are audited by triggers, even
-- without the functions (a superuser can always write the tables).
UPDATE pankha.agent_groups SET description = 'changed by hand' WHERE group_name = 'lab';
INSERT INTO pankha.settings (scope_kind, key, value) VALUES ('global', 'fan_step', '7');
DELETE FROM pankha.settings WHERE key = 'fan_step';
-- An update that changes nothing leaves no row.
UPDATE pankha.agent_groups SET description = description WHERE group_name = 'lab';
-- A restore from pg_dump output (empty search_path, check_function_bodies
-- off) reloads these tables with the log itself, so it is not audited again.
BEGIN;
SELECT pg_catalog.set_config('search_path', '', true) AS restore_search_path;
SET LOCAL check_function_bodies = off;
INSERT INTO pankha.agent_groups (group_name) VALUES ('restored');
COMMIT;
SELECT event, details -> 'old' ->> 'description' AS old_description,
       details -> 'new' ->> 'description' AS new_description,
       coalesce(details -> 'new' ->> 'key', details -> 'old' ->> 'key') AS key
FROM pankha.audit_log WHERE audit_id > 4 ORDER BY audit_id;
SELECT group_name FROM pankha.agent_groups ORDER BY 1;

-- Retention: 180 days unless set, at least a day; pruning deletes older
-- rows and says so in the log.
SELECT pankha.audit_retention();
SELECT pg_temp.err($$SELECT pankha.set_audit_retention('1 hour')$$);
SELECT pg_temp.err($$SELECT pankha.set_audit_retention(NULL)$$);
SELECT pankha.set_audit_retention('30 days');
SELECT pankha.audit_retention();
SELECT pankha.set_audit_retention('45 days');
SELECT retention FROM pankha.audit_settings;
INSERT INTO pankha.audit_log (logged_at, event, details)
SELECT now() - d * interval '1 day', 'test.old', jsonb_build_object('days', d)
FROM unnest(ARRAY[10, 44, 46, 100, 400]) d;
SELECT pankha.prune_audit_log() AS pruned;
SELECT pankha.prune_audit_log() AS pruned_again;
SELECT event, details FROM pankha.audit_log WHERE event IN ('test.old', 'audit.pruned', 'audit_retention.insert',
                                                           'audit_retention.update')
ORDER BY audit_id;

-- Readers see the log; nobody but the owner changes it.
SET ROLE pankha_reader;
SELECT count(*) > 0 AS reader_sees_rows FROM pankha.audit_log;
SELECT pg_temp.err($$DELETE FROM pankha.audit_log$$);
SELECT pg_temp.err($$SELECT pankha.prune_audit_log()$$);
SELECT pg_temp.err($$SELECT pankha.set_audit_retention('1 day')$$);
RESET ROLE;
SET ROLE pankha_bridge;
SELECT pg_temp.err($$UPDATE pankha.audit_log SET event = 'nothing happened'$$);
SELECT pg_temp.err($$INSERT INTO pankha.audit_log (event) VALUES ('forged')$$);
SELECT pg_temp.err($$SELECT pankha.audit('forged', NULL, '{}')$$);
RESET ROLE;

-- The configuration tables of this part are kept by pg_dump.
SELECT t.name, t.name IN (SELECT c.relname
                          FROM pg_extension e, unnest(e.extconfig) AS cfg(relid)
                          JOIN pg_class c ON c.oid = cfg.relid
                          WHERE e.extname = 'pankha') AS dumped
FROM unnest(ARRAY['tokens', 'tokens_token_id_seq', 'audit_log', 'audit_log_audit_id_seq', 'audit_settings',
                  'commands', 'agent_groups', 'agent_group_members', 'settings', 'fan_profiles',
                  'fan_profile_assignments', 'agents', 'sensors', 'fans']) AS t(name)
ORDER BY 1;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
