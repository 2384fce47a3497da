-- M1 of the 2026-12 review (issue 13), SQL side: a fan's floor comes from
-- the catalog, which only pankha.set_fan_limits (an administrator's
-- function) changes.  No command, and no settings change made through a
-- bridge, can lower it: limits inside set_fan_speed or apply_profile, "fans"
-- or a lower failsafe_speed inside update_settings are refused, and the
-- emergency temperature can only be lowered (made safer) remotely.
\i sql/queue_helpers.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_m1_bridge;
RESET client_min_messages;
CREATE ROLE regress_m1_bridge LOGIN IN ROLE pankha_bridge;

SELECT pankha.register_agent('m1-a', 'A') IS NOT NULL AS registered;
INSERT INTO pankha.fans (agent_id, fan_id, slot, min_speed, max_speed)
VALUES ('m1-a', 'cpu_fan', 0, 30, 100);
INSERT INTO pankha.sensors (agent_id, sensor_id, slot) VALUES ('m1-a', 'cpu_temp', 0);
SELECT pankha.create_profile('m1-quiet', '[[30, 0], [60, 50], [80, 100]]') AS profile;
SELECT count(*) AS commands_before FROM pankha.commands \gset

-- What the bridge sends for a dashboard operator.
SET SESSION AUTHORIZATION regress_m1_bridge;
-- the review's command: a speed of 0 with its own floor of 0
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'set_fan_speed',
    '{"fan_id": "cpu_fan", "speed": 0, "min_speed": 0}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'set_fan_speed',
    '{"fan_id": "cpu_fan", "speed": 50, "max_speed": 100}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'apply_profile',
    '{"fan_id": "cpu_fan", "sensor_id": "cpu_temp", "profile": "m1-quiet", "min_speed": 0}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'apply_profile',
    '{"fan_id": "cpu_fan", "sensor_id": "cpu_temp", "profile": "m1-quiet", "emergency_temp": 120}')$$);
-- the review's settings: lower every floor through update_settings
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'update_settings',
    '{"fans": {"cpu_fan": {"min_speed": 0, "max_speed": 100}}, "failsafe_speed": 0}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'update_settings', '{"failsafe_speed": 0}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'update_settings', '{"emergency_temp": 100}')$$);
-- the same through the settings table
SELECT pg_temp.err($$SELECT pankha.set_setting('agent:m1-a', 'failsafe_speed', '10', 'mallory')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('global', 'emergency_temp', '95', 'mallory')$$);
SELECT pg_temp.err($$SELECT pankha.set_fan_limits('m1-a', 'cpu_fan', 0, 100)$$);
-- making it safer is allowed: a higher failsafe speed, a lower emergency
-- temperature, the catalog's own limits, a speed inside them
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'update_settings',
    '{"fans": {"cpu_fan": {"min_speed": 30, "max_speed": 100}}, "failsafe_speed": 90, "emergency_temp": 70}')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('agent:m1-a', 'failsafe_speed', '80', 'alice')$$);
SELECT pg_temp.err($$SELECT pankha.set_setting('agent:m1-a', 'emergency_temp', '75', 'alice')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 40}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'apply_profile',
    '{"fan_id": "cpu_fan", "sensor_id": "cpu_temp", "profile": "m1-quiet"}')$$);
-- undoing a safer setting would lower the floor again: refused too
SELECT pg_temp.err($$SELECT pankha.reset_setting('agent:m1-a', 'failsafe_speed', 'mallory')$$);
RESET SESSION AUTHORIZATION;

-- Nothing refused was queued or stored; the catalog is as it was.
SELECT command_type, parameters ->> 'failsafe_speed' AS failsafe_speed,
       parameters ->> 'emergency_temp' AS emergency_temp, parameters -> 'fans' AS fans,
       parameters ->> 'min_speed' AS min_speed
FROM pankha.commands ORDER BY created_at, command_id OFFSET :commands_before;
SELECT scope, key, value FROM pankha.settings WHERE agent_id = 'm1-a' OR scope_kind = 'global' ORDER BY 1, 2;
SELECT fan_id, min_speed, max_speed FROM pankha.fans WHERE agent_id = 'm1-a';

-- The administrator's path: pankha.set_fan_limits and settings in SQL as
-- the owner; what it queues passes the same checks.
SELECT pankha.set_fan_limits('m1-a', 'cpu_fan', 10, 100) AS queued_by_admin;
SELECT pankha.set_setting('agent:m1-a', 'failsafe_speed', '40') AS lowered_by_admin;
SELECT parameters -> 'fans' AS fans, parameters ->> 'failsafe_speed' AS failsafe_speed
FROM pankha.commands WHERE command_type = 'update_settings' ORDER BY created_at DESC, command_id LIMIT 1;
-- even the owner's commands carry no limits of their own
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'set_fan_speed',
    '{"fan_id": "cpu_fan", "speed": 0, "min_speed": 0}')$$);
SELECT pg_temp.err($$SELECT pankha.send_command('m1-a', 'update_settings',
    '{"fans": {"cpu_fan": {"min_speed": 0, "max_speed": 100}}}')$$);

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
DROP ROLE regress_m1_bridge;
