-- The command queue: send, claim, redelivery, expiry, dead commands, ack,
-- and the NOTIFY payloads that wake bridges and dashboards.
\i sql/queue_helpers.psql

SELECT pankha.register_agent('rig-1', 'Rig 1') IS NOT NULL AS registered;
SELECT pankha.register_agent('rig-2', 'Rig 2') IS NOT NULL AS registered;
-- The catalog as ingest would have filled it.
INSERT INTO pankha.fans (agent_id, fan_id, slot, min_speed, max_speed)
VALUES ('rig-1', 'cpu_fan', 0, 20, 90), ('rig-1', 'case_fan', 1, 0, 100);
INSERT INTO pankha.sensors (agent_id, sensor_id, slot) VALUES ('rig-1', 'cpu_temp', 0);
SELECT pankha.create_profile('silent', '[[30, 20], [60, 50], [80, 100]]') AS profile;

-- Sending: each command NOTIFYs pankha_command with its agent and id.
LISTEN pankha_command;
LISTEN pankha_command_result;
\o :notify_file
SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 45}') AS c1 \gset
SELECT pankha.send_command('rig-1', 'restore_auto', '{}', 'low') AS c2 \gset
SELECT pankha.send_command('rig-1', 'emergency_stop', '{}', 'high') AS c3 \gset
SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "case_fan", "speed": 0}') AS c4 \gset
SELECT pankha.send_command('rig-2', 'reboot', '{"delay": 5, "reason": "kernel"}', 'high', '10 minutes') AS c5 \gset
SELECT pankha.send_command('rig-1', 'apply_profile', '{"fan_id": "cpu_fan", "sensor_id": "cpu_temp", "profile": "silent"}') AS c6 \gset
\o
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pg_temp.label(command_id), agent_id, command_type, parameters, priority, status, attempts,
       expires_at - created_at AS ttl, issued_by
FROM pankha.commands ORDER BY created_at;

-- A transaction's commands wake the bridges only when it commits.
BEGIN;
\o :notify_file
SELECT pankha.send_command('rig-2', 'noop') AS rolled_back \gset
\o
SELECT * FROM pg_temp.notifications(:'notify_file');
ROLLBACK;
SELECT count(*) AS commands_after_rollback FROM pankha.commands;

-- Invalid commands: each error names what is wrong, and nothing is queued.
SELECT pg_temp.err($$SELECT pankha.send_command('nobody', 'emergency_stop')$$);
SELECT pg_temp.err($$SELECT pankha.send_command(NULL, 'emergency_stop')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', '')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', repeat('x', 65))$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '[1, 2]')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', jsonb_build_object('blob', repeat('x', 70000)))$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'urgent')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'normal', '0')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'normal', '-5 minutes')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'normal', '2 years')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'normal', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'reboot', '{}', 'normal', '1 hour', NULL, 0)$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"speed": 50}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": 7, "speed": 50}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "gpu_fan", "speed": 50}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-2', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 50}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan"}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": "50"}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 19.5}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 91}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "case_fan", "speed": -1}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 50, "force": true}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'emergency_stop', '{"now": true}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'restore_auto', '{"fan_id": "nope"}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'update_settings', '{"update_interval": 0.1}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'update_settings', '{"turbo": true}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'apply_profile', '{"fan_id": "cpu_fan", "sensor_id": "cpu_temp", "profile": "loud"}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'apply_profile', '{"fan_id": "cpu_fan", "sensor_id": "gpu_temp", "profile": "silent"}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('rig-1', 'apply_profile', '{"fan_id": "cpu_fan", "profile": "silent"}')$$);
SELECT count(*) AS commands_after_errors FROM pankha.commands;

-- Claiming: highest priority first, then oldest; marked sent with a
-- redelivery deadline; rig-2 is not asked for, so its command stays.
SELECT pg_temp.label(command_id), agent_id, command_type, parameters, priority, attempts
FROM pankha.claim_commands('{rig-1}', '1 hour', 3);
SELECT pg_temp.label(command_id), agent_id, command_type, priority, attempts
FROM pankha.claim_commands('{rig-1,rig-2}', '1 hour');
SELECT pg_temp.label(command_id), status, attempts, redeliver_at - sent_at AS visibility
FROM pankha.commands ORDER BY created_at;
-- Nothing is deliverable again before its deadline.
SELECT count(*) AS claimed_again FROM pankha.claim_commands('{rig-1,rig-2}');
SELECT count(*) AS no_agents FROM pankha.claim_commands('{}');
SELECT count(*) AS null_agents FROM pankha.claim_commands(NULL);
SELECT pg_temp.err($$SELECT pankha.claim_commands('{rig-1}', '0')$$);
SELECT pg_temp.err($$SELECT pankha.claim_commands('{rig-1}', '2 days')$$);
SELECT pg_temp.err($$SELECT pankha.claim_commands('{rig-1}', '30 seconds', 0)$$);
SELECT pg_temp.err($$SELECT pankha.claim_commands('{rig-1}', '30 seconds', NULL)$$);

-- Acknowledgements, with the result NOTIFY for dashboards.
\o :notify_file
SELECT pankha.ack_command('rig-1', :'c3', true) AS ack_c3 \gset
SELECT pankha.ack_command('rig-1', :'c4', false, 'pwm1_enable: permission denied') AS ack_c4 \gset
SELECT pankha.ack_command('rig-1', :'c3', true) AS ack_c3_again \gset
SELECT pankha.ack_command('rig-1', :'c4', true) AS ack_c4_again \gset
\o
SELECT :'ack_c3' AS c3, :'ack_c4' AS c4, :'ack_c3_again' AS c3_again, :'ack_c4_again' AS c4_again;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pg_temp.label(command_id), status, success, error, acked_at IS NOT NULL AS acked
FROM pankha.commands WHERE command_id IN (:'c3', :'c4') ORDER BY created_at;
SELECT pg_temp.labelled(pg_temp.err(format('SELECT pankha.ack_command(%L, %L, true)', 'rig-2', :'c1')));
SELECT pg_temp.labelled(pg_temp.err(format('SELECT pankha.ack_command(%L, %L, true)', 'rig-1', gen_random_uuid())));
SELECT pg_temp.err(format('SELECT pankha.ack_command(%L, %L, NULL)', 'rig-1', :'c1'));
SELECT pg_temp.err(format('SELECT pankha.ack_command(%L, NULL, true)', 'rig-1'));
SELECT pg_temp.err(format('SELECT pankha.ack_command(%L, %L, true)', 'rig-1', 'not-a-uuid'));
SELECT status FROM pankha.commands WHERE command_id = :'c1';
-- From here on only results are shown.
UNLISTEN pankha_command;
-- An error text is kept up to 2000 characters.
\o :notify_file
SELECT pankha.ack_command('rig-1', :'c1', false, repeat('e', 5000)) AS long_error \gset
\o
SELECT :'long_error' AS long_error;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT length(error) FROM pankha.commands WHERE command_id = :'c1';

-- Redelivery: an unacknowledged command is delivered again after its
-- deadline, until max_attempts; then it is dead.
SELECT pankha.send_command('rig-2', 'flaky', '{}', 'normal', '1 hour', NULL, 2) AS c7 \gset
SELECT pg_temp.label(command_id), attempts FROM pankha.pending_commands('rig-2', '10 milliseconds');
SELECT pg_sleep(0.05);
SELECT pg_temp.label(command_id), attempts FROM pankha.pending_commands('rig-2', '10 milliseconds');
SELECT pg_sleep(0.05);
\o :notify_file
SELECT count(*) AS third_delivery FROM pankha.pending_commands('rig-2', '10 milliseconds') \gset
\o
SELECT :third_delivery AS third_delivery;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT status, status_reason, attempts FROM pankha.commands WHERE command_id = :'c7';

-- Expiry: past expires_at a command is never delivered; a late ack is
-- recorded but does not bring it back.
SELECT pankha.send_command('rig-2', 'short', '{}', 'high', '20 milliseconds') AS c8 \gset
SELECT pankha.send_command('rig-2', 'later', '{}', 'low') AS c9 \gset
SELECT pg_sleep(0.05);
\o :notify_file
SELECT string_agg(pg_temp.label(command_id), ',') AS claimed FROM pankha.claim_commands('{rig-2}') \gset
\o
SELECT :'claimed' AS claimed;
SELECT * FROM pg_temp.notifications(:'notify_file');
\o :notify_file
SELECT pankha.ack_command('rig-2', :'c8', true) AS late_ack \gset
SELECT pankha.ack_command('rig-2', :'c8', false, 'again') AS late_ack_again \gset
SELECT pankha.ack_command('rig-2', :'c7', true) AS dead_ack \gset
\o
SELECT :'late_ack' AS late_ack, :'late_ack_again' AS late_ack_again, :'dead_ack' AS dead_ack;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pg_temp.label(command_id), status, status_reason, success, error
FROM pankha.commands WHERE command_id IN (:'c7', :'c8') ORDER BY created_at;

-- The worker's pass retires what can no longer be delivered.
SELECT pankha.send_command('rig-2', 'stale', '{}', 'normal', '10 milliseconds') AS c10 \gset
SELECT pg_sleep(0.05);
\o :notify_file
SELECT pankha.expire_commands() AS retired \gset
SELECT pankha.expire_commands() AS retired_again \gset
\o
SELECT :retired AS retired, :retired_again AS retired_again;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT status FROM pankha.commands WHERE command_id = :'c10';

-- Pruning removes finished commands only.
SELECT status, count(*) FROM pankha.commands GROUP BY status ORDER BY status;
SELECT pankha.prune_commands('1 hour') AS pruned_recent;
SELECT pankha.prune_commands('0') AS pruned;
SELECT status, count(*) FROM pankha.commands GROUP BY status ORDER BY status;
SELECT pg_temp.err($$SELECT pankha.prune_commands('-1 day')$$);
SELECT pg_temp.err($$SELECT pankha.prune_commands(NULL)$$);

-- The command history in the audit log.
SELECT event, agent_id, pg_temp.labelled((details - 'expires_at' - 'parameters' - 'error')::text) AS details,
       length(details ->> 'error') AS error_length
FROM pankha.audit_log WHERE event LIKE 'command.%' ORDER BY audit_id;

-- The bridge role claims and acks but cannot touch the table.
SET ROLE pankha_bridge;
SELECT pankha.send_command('rig-2', 'from_bridge', '{}', 'normal', '1 hour', 'alice') AS c11 \gset
SELECT pg_temp.label(command_id), attempts FROM pankha.claim_commands('{rig-2}');
\o :notify_file
SELECT pankha.ack_command('rig-2', :'c11', true) AS ack_c11 \gset
\o
SELECT :'ack_c11' AS ack_c11;
SELECT pg_temp.err($$UPDATE pankha.commands SET status = 'queued'$$);
SELECT pg_temp.err($$DELETE FROM pankha.commands$$);
SELECT pg_temp.err($$SELECT pankha.expire_commands()$$);
RESET ROLE;
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT issued_by, status FROM pankha.commands WHERE command_id = :'c11';
SELECT db_role, ui_user FROM pankha.audit_log
WHERE event = 'command.issued' AND details ->> 'command_id' = :'c11';
UNLISTEN *;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
