-- Fan profiles and per-fan limits: curves validated strictly, assigned with
-- their sensor, queued to the agent as apply_profile with the whole curve.
\i sql/queue_helpers.psql

SELECT pankha.register_agent('box-1', 'Box 1') IS NOT NULL AS registered;
INSERT INTO pankha.fans (agent_id, fan_id, slot, min_speed, max_speed)
VALUES ('box-1', 'cpu_fan', 0, 25, 100), ('box-1', 'rear_fan', 1, 0, 100);
INSERT INTO pankha.sensors (agent_id, sensor_id, slot)
VALUES ('box-1', 'cpu_temp', 0), ('box-1', 'board_temp', 1);

-- Creating profiles; points may also be objects, and are stored as pairs.
SELECT pankha.create_profile('balanced', '[[30, 25], [50, 45], [70, 80], [85, 100]]', 2, 5, 'default curve');
SELECT pankha.create_profile('quiet', '[{"temperature": 40, "speed": 20}, {"temperature": 75.5, "speed": 60}]', 3.5, 2);
SELECT profile_name, points, hysteresis, step, description FROM pankha.fan_profiles ORDER BY 1;

-- Invalid curves and tunings.
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '{"30": 20}')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', NULL)$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20]]')$$);
SELECT pg_temp.err(format('SELECT pankha.create_profile(%L, %L)', 'p',
                          (SELECT jsonb_agg(jsonb_build_array(t, 50)) FROM generate_series(1, 33) t)));
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [30, 40]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40], [45, 60]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 101]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, -1], [50, 40]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], ["50", 40]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [151, 40]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40, 1]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], 50]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], {"temperature": 50}]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, null]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40]]', 11)$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40]]', -1)$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40]]', 'NaN')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40]]', 2, 1)$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('p', '[[30, 20], [50, 40]]', 2, NULL)$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('', '[[30, 20], [50, 40]]')$$);
SELECT pg_temp.err($$SELECT pankha.create_profile('quiet', '[[30, 20], [50, 40]]')$$);
SELECT count(*) AS profiles FROM pankha.fan_profiles;

-- Assigning queues apply_profile with the curve and the fan's limits.
LISTEN pankha_command;
\o :notify_file
SELECT pankha.assign_profile('box-1', 'cpu_fan', 'balanced', 'cpu_temp') AS a1 \gset
\o
SELECT * FROM pg_temp.notifications(:'notify_file');
SELECT pg_temp.label(command_id), command_type, parameters FROM pankha.commands WHERE command_id = :'a1';
UNLISTEN *;
SELECT agent_id, fan_id, profile_name, sensor_id FROM pankha.fan_profile_assignments;
SELECT pg_temp.err($$SELECT pankha.assign_profile('box-1', 'cpu_fan', 'loud', 'cpu_temp')$$);
SELECT pg_temp.err($$SELECT pankha.assign_profile('box-1', 'gpu_fan', 'quiet', 'cpu_temp')$$);
SELECT pg_temp.err($$SELECT pankha.assign_profile('box-1', 'cpu_fan', 'quiet', 'gpu_temp')$$);
SELECT pg_temp.err($$SELECT pankha.assign_profile('nobody', 'cpu_fan', 'quiet', 'cpu_temp')$$);
SELECT pg_temp.err($$SELECT pankha.assign_profile('box-1', NULL, 'quiet', 'cpu_temp')$$);
SELECT pg_temp.err($$SELECT pankha.assign_profile('box-1', 'cpu_fan', NULL, 'cpu_temp')$$);

-- Reassigning replaces the queued apply_profile of that fan.
SELECT pankha.assign_profile('box-1', 'cpu_fan', 'quiet', 'board_temp') AS a2 \gset
SELECT pankha.assign_profile('box-1', 'rear_fan', 'quiet', 'board_temp') AS a3 \gset
SELECT pg_temp.label(command_id), parameters ->> 'fan_id' AS fan, parameters -> 'profile' ->> 'name' AS profile,
       status, pg_temp.labelled(status_reason) AS status_reason
FROM pankha.commands ORDER BY substr(pg_temp.label(command_id), 4)::int;

-- Changing a profile queues it again to every fan using it.
SELECT pankha.update_profile('quiet', '[[35, 20], [60, 50], [80, 90]]', 1, 10) AS requeued;
SELECT parameters ->> 'fan_id' AS fan, parameters -> 'profile' AS profile FROM pankha.commands
WHERE status = 'queued' ORDER BY parameters ->> 'fan_id';
SELECT pg_temp.err($$SELECT pankha.update_profile('loud', '[[35, 20], [60, 50]]')$$);
SELECT pg_temp.err($$SELECT pankha.update_profile('quiet', '[[35, 20], [20, 50]]')$$);

-- Fan limits: stored in the catalog, checked by set_fan_speed, and sent to
-- the agent in its settings and in the profile it runs.
SELECT pankha.set_fan_limits('box-1', 'rear_fan', 30, 95, 90) AS queued;
SELECT fan_id, min_speed, max_speed, emergency_temp FROM pankha.fans ORDER BY fan_id;
SELECT pankha.effective_settings('box-1') -> 'fans' AS fans_in_settings;
SELECT command_type, parameters -> 'fans' -> 'rear_fan' AS settings_limits,
       parameters -> 'min_speed' AS min_speed, parameters -> 'max_speed' AS max_speed
FROM pankha.commands WHERE status = 'queued' AND parameters ->> 'fan_id' IS DISTINCT FROM 'cpu_fan'
ORDER BY command_type;
SELECT pg_temp.err($$SELECT pankha.send_command('box-1', 'set_fan_speed', '{"fan_id": "rear_fan", "speed": 20}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('box-1', 'set_fan_speed', '{"fan_id": "rear_fan", "speed": 96}')$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', 60, 50)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', -1, 50)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', 10, 101)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', NULL, 50)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', 'NaN', 50)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'rear_fan', 10, 50, 300)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('box-1', 'side_fan', 10, 50)$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('nobody', 'rear_fan', 10, 50)$$);
-- Setting the limits a fan already has changes nothing and queues nothing.
SELECT pankha.set_fan_limits('box-1', 'cpu_fan', 25, 100) AS queued_same_limits;

-- A profile in use cannot be deleted; unassigning queues restore_auto.
SELECT pg_temp.err($$SELECT pankha.delete_profile('quiet')$$);
SELECT pankha.unassign_profile('box-1', 'rear_fan') AS r1 \gset
SELECT pankha.unassign_profile('box-1', 'cpu_fan') AS r2 \gset
SELECT command_type, parameters, status FROM pankha.commands WHERE command_id IN (:'r1', :'r2') ORDER BY created_at;
-- restore_auto supersedes the fan's unfinished apply_profile.
SELECT pg_temp.label(command_id), command_type, parameters ->> 'fan_id' AS fan, status,
       pg_temp.labelled(status_reason) AS status_reason
FROM pankha.commands WHERE command_type IN ('apply_profile', 'restore_auto')
ORDER BY substr(pg_temp.label(command_id), 4)::int;
SELECT pg_temp.err($$SELECT pankha.unassign_profile('box-1', 'rear_fan')$$);
SELECT pankha.delete_profile('quiet');
SELECT pg_temp.err($$SELECT pankha.delete_profile('quiet')$$);
SELECT profile_name FROM pankha.fan_profiles;

-- A sent apply_profile may also name a profile by itself.
SELECT pankha.send_command('box-1', 'apply_profile',
                           '{"fan_id": "rear_fan", "sensor_id": "cpu_temp", "profile": {"name": "balanced", "points": [[0, 0], [1, 1]]}}') AS a4 \gset
SELECT parameters FROM pankha.commands WHERE command_id = :'a4';

-- The profile history in the audit log.
SELECT event, agent_id,
       coalesce(details -> 'new' ->> 'profile_name', details -> 'old' ->> 'profile_name') AS profile,
       coalesce(details -> 'new' ->> 'fan_id', details -> 'old' ->> 'fan_id', details ->> 'fan_id') AS fan,
       details -> 'new' -> 'points' AS new_points, details -> 'new' -> 'min_speed' AS new_min_speed
FROM pankha.audit_log
WHERE event LIKE 'profile%' OR event LIKE 'fan_limits%' ORDER BY audit_id;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
