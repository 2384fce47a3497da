-- Settings: defaults, global, group and agent levels, validation, and the
-- update_settings commands queued when an agent's effective settings change.
\i sql/queue_helpers.psql

SELECT key, value_type, min_value, max_value, allowed, default_value, unit
FROM pankha.setting_definitions ORDER BY key;

SELECT pankha.register_agent('node-1', 'Node 1') IS NOT NULL AS registered;
SELECT pankha.register_agent('node-2', 'Node 2') IS NOT NULL AS registered;
SELECT pankha.register_agent('node-3', 'Node 3') IS NOT NULL AS registered;

-- Without any setting an agent gets the built-in defaults.
SELECT pankha.effective_settings('node-1');
SELECT pg_temp.err($$SELECT pankha.effective_settings('nobody')$$);
SELECT pg_temp.err($$SELECT pankha.effective_settings(NULL)$$);

-- A global change reaches every agent: one update_settings each, carrying
-- the new effective settings, and a NOTIFY for the bridges.
LISTEN pankha_command;
\o :notify_file
SELECT pankha.set_setting('global', 'update_interval', '5') AS queued \gset
\o
SELECT :queued AS queued;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pg_temp.label(command_id), agent_id, command_type, parameters, status
FROM pankha.commands ORDER BY created_at, agent_id;
-- Setting the same value again changes nothing, so nothing is queued.
SELECT pankha.set_setting('global', 'update_interval', '5.0') AS queued_again;
UNLISTEN *;

-- Groups: a group's setting wins over the global one, an agent's over both.
SELECT pankha.create_group('rack-a', 'the rack by the door');
SELECT pankha.set_agent_group('node-1', 'rack-a') AS queued_join_empty_group;
SELECT pankha.set_agent_group('node-2', 'rack-a') AS queued_join_empty_group;
SELECT pankha.set_setting('group:rack-a', 'fan_step', '10') AS queued_group;
SELECT pankha.set_setting('agent:node-1', 'fan_step', '20') AS queued_agent;
-- node-1 has its own fan_step, so a group change does not alter it.
SELECT pankha.set_setting('group:rack-a', 'fan_step', '15') AS queued_group_masked;
SELECT pankha.set_setting('group:rack-a', 'log_level', '"debug"') AS queued_group_log;
SELECT agent_id, group_name, settings ->> 'fan_step' AS fan_step, settings ->> 'log_level' AS log_level,
       settings ->> 'update_interval' AS update_interval
FROM pankha.agent_settings ORDER BY agent_id;
SELECT scope, key, value FROM pankha.settings ORDER BY scope, key;

-- Coalescing: each agent has at most one unfinished update_settings, the
-- latest; the ones it replaced are expired as superseded.
SELECT agent_id, status, pg_temp.labelled(status_reason) AS status_reason,
       parameters = pankha.effective_settings(agent_id) AS is_current
FROM pankha.commands WHERE command_type = 'update_settings'
ORDER BY agent_id, created_at;
SELECT agent_id, count(*) AS unfinished FROM pankha.commands
WHERE command_type = 'update_settings' AND status IN ('queued', 'sent') GROUP BY agent_id ORDER BY 1;
-- A delivered but unacknowledged one is superseded too, so a redelivery
-- can never bring back older settings.
SELECT count(*) AS delivered FROM pankha.claim_commands('{node-3}');
SELECT pankha.set_setting('agent:node-3', 'hysteresis', '4') AS queued;
SELECT status, parameters ->> 'hysteresis' AS hysteresis FROM pankha.commands
WHERE agent_id = 'node-3' ORDER BY created_at;

-- Resetting falls back to the next level.
SELECT pankha.reset_setting('agent:node-1', 'fan_step') AS queued_reset;
SELECT pankha.reset_setting('agent:node-1', 'fan_step') AS queued_reset_again;
SELECT pankha.effective_settings('node-1') ->> 'fan_step' AS fan_step;
-- Leaving the group, and deleting it.
SELECT pankha.set_agent_group('node-2', NULL) AS queued_leave;
SELECT pankha.effective_settings('node-2') ->> 'log_level' AS log_level;
SELECT pankha.delete_group('rack-a') AS queued_delete;
SELECT agent_id, group_name, settings ->> 'fan_step' AS fan_step, settings ->> 'log_level' AS log_level
FROM pankha.agent_settings ORDER BY agent_id;
SELECT scope, key, value FROM pankha.settings ORDER BY scope, key;

-- Invalid settings: unknown keys, wrong types, out of range, bad scopes.
SELECT count(*) AS commands_before FROM pankha.commands \gset
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'turbo', 'true')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', NULL, 'true')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'update_interval', '"5"')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'update_interval', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'update_interval', 'null')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'update_interval', '0.4')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'update_interval', '31')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'emergency_temp', '59')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'emergency_temp', '101')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'failsafe_speed', '-1')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'failsafe_speed', '100.5')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'fan_step', '1')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'hysteresis', '10.01')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'log_level', '"verbose"')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'log_level', '3')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'enable_fan_control', '1')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'enable_fan_control', '"false"')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('fleet', 'fan_step', '10')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting(NULL, 'fan_step', '10')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('group:nope', 'fan_step', '10')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('agent:nobody', 'fan_step', '10')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('agent:', 'fan_step', '10')$$);
SELECT pg_temp.err($$SELECT pankha.reset_setting('global', 'turbo')$$);
SELECT pg_temp.err($$SELECT pankha.create_group('')$$);
SELECT pg_temp.err($$SELECT pankha.create_group(E'a\tb')$$);
SELECT pankha.create_group('rack-b');
SELECT pg_temp.err($$SELECT pankha.create_group('rack-b')$$);
SELECT pg_temp.err($$SELECT pankha.delete_group('rack-z')$$);
SELECT pg_temp.err($$SELECT pankha.set_agent_group('node-1', 'rack-z')$$);
SELECT pg_temp.err($$SELECT pankha.set_agent_group('nobody', 'rack-b')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'fan_step', '10', E'bad\nuser')$$);
SELECT count(*) - :commands_before AS commands_added_by_errors FROM pankha.commands;

-- The bridge may change settings for a dashboard user; it is recorded.
SET ROLE pankha_bridge;
SELECT pankha.set_setting('agent:node-2', 'failsafe_speed', '80', 'alice') AS queued_by_bridge;
SELECT pankha.effective_settings('node-2') ->> 'failsafe_speed' AS failsafe_speed;
SELECT pg_temp.err($$INSERT INTO pankha.settings (scope_kind, key, value) VALUES ('global', 'fan_step', '50')$$);
SELECT pg_temp.err($$SELECT pankha.create_group('rack-c')$$);
RESET ROLE;
SELECT scope, key, value, updated_by FROM pankha.settings WHERE scope = 'agent:node-2';
SELECT issued_by FROM pankha.commands ORDER BY created_at DESC LIMIT 1;

-- Every change is in the audit log.
SELECT event, agent_id, ui_user,
       coalesce(details -> 'new' ->> 'scope', details -> 'old' ->> 'scope') AS scope,
       coalesce(details -> 'new' ->> 'key', details -> 'old' ->> 'key') AS key,
       details -> 'old' -> 'value' AS old_value, details -> 'new' -> 'value' AS new_value,
       coalesce(details -> 'new' ->> 'group_name', details -> 'old' ->> 'group_name') AS group_name
FROM pankha.audit_log WHERE event NOT LIKE 'command.%' AND event NOT LIKE 'agent.%'
ORDER BY audit_id;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
