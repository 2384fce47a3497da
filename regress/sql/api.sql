-- The dashboard API functions (pankha.api_*): one call per endpoint, the
-- role rules and the audit inside, errors naming their field, paging.
\i sql/queue_helpers.psql

-- Stable output: times become "<time>", cursors "<cursor>", secrets are
-- cut to their prefix, latencies hidden, command ids labelled.
CREATE FUNCTION pg_temp.stable(j jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    v jsonb;
    r jsonb := '{}';
BEGIN
    IF jsonb_typeof(j) = 'object' THEN
        FOR k, v IN SELECT * FROM jsonb_each(j) LOOP
            IF jsonb_typeof(v) = 'string'
               AND k ~ '(_at|^at|^ts|^t|^from|^to|last_seen|first_seen|silenced_until|average_duration)$' THEN
                v := '"<time>"';
            ELSIF k = 'next_cursor' AND jsonb_typeof(v) = 'string' THEN
                v := '"<cursor>"';
            ELSIF k = 'token' AND jsonb_typeof(v) = 'string' THEN
                v := to_jsonb(left(v #>> '{}', 4) || '<secret>');
            ELSIF k = 'latency_ms' AND jsonb_typeof(v) = 'number' THEN
                v := '"<n>"';
            ELSE
                v := pg_temp.stable(v);
            END IF;
            r := r || jsonb_build_object(k, v);
        END LOOP;
        RETURN r;
    ELSIF jsonb_typeof(j) = 'array' THEN
        RETURN coalesce((SELECT jsonb_agg(pg_temp.stable(e) ORDER BY i)
                         FROM jsonb_array_elements(j) WITH ORDINALITY AS x(e, i)), '[]');
    END IF;
    RETURN j;
END
$$;

-- Calls pankha.api_<fn> as a dashboard user of the given role (alice is
-- admin, oscar operator, vera viewer) and shows the answer, or the error
-- as SQLSTATE [field]: message (detail).
CREATE FUNCTION pg_temp.api(fn text, role text, args jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    state text;
    msg text;
    detail text;
    col text;
BEGIN
    EXECUTE format('SELECT pankha.%I($1, $2, $3)', 'api_' || fn)
    INTO r USING CASE role WHEN 'admin' THEN 'alice' WHEN 'operator' THEN 'oscar' WHEN 'viewer' THEN 'vera' END,
                 role, args;
    RETURN pg_temp.labelled(pg_temp.stable(r)::text);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            col = COLUMN_NAME;
    RETURN state || coalesce(' [' || nullif(col, '') || ']', '') || ': ' || msg
           || coalesce(' (' || nullif(detail, '') || ')', '');
END
$$;

-- The answer itself, for picking fields.
CREATE FUNCTION pg_temp.call(fn text, role text, args jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    EXECUTE format('SELECT pankha.%I($1, $2, $3)', 'api_' || fn)
    INTO r USING CASE role WHEN 'admin' THEN 'alice' WHEN 'operator' THEN 'oscar' WHEN 'viewer' THEN 'vera' END,
                 role, args;
    RETURN r;
END
$$;

-- A cursor as the listings make them, for forging bad ones.
CREATE FUNCTION pg_temp.cursor(key text[]) RETURNS text
LANGUAGE sql RETURN translate(encode(convert_to(to_jsonb(key)::text, 'UTF8'), 'base64'), E'+/=\n', '-_');

-- A frame of now with the given values.
CREATE FUNCTION pg_temp.frame(sensors jsonb, fans jsonb) RETURNS jsonb
LANGUAGE sql AS $$
SELECT jsonb_build_object('timestamp', (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
                          'sensors', sensors, 'fans', fans,
                          'systemHealth', '{"cpuUsage": 25.5, "memoryUsage": 40, "agentUptime": 3600}'::jsonb)
$$;

-- Every API function is callable by pankha_bridge and by nobody else; the
-- helpers they use are callable by neither.
SELECT p.proname,
       has_function_privilege('pankha_bridge', p.oid, 'EXECUTE') AS bridge,
       EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
               WHERE x.grantee = 0) AS public
FROM pg_proc p
WHERE p.pronamespace = 'pankha'::regnamespace
  AND (p.proname LIKE 'api\_%' OR p.proname IN ('alert_silenced_until', 'check_alert_rule'))
ORDER BY 1;

-- A bridge's login role holds pankha_bridge only; the calls below run as it.
CREATE ROLE api_test_bridge LOGIN IN ROLE pankha_bridge;
CREATE ROLE api_test_nobody LOGIN;
SET ROLE api_test_nobody;
SELECT pg_temp.api('fleet', 'admin');
RESET ROLE;

-- The fleet: three agents, two in a group, box-1 online with readings.
SELECT count(pankha.register_agent(id, 'Box ' || right(id, 1), id || '.lan')) AS registered
FROM unnest('{box-1,box-2,box-3}'::text[]) id;
SELECT pankha.create_group('rack-a', 'the first rack');
SELECT pankha.set_agent_group('box-1', 'rack-a'), pankha.set_agent_group('box-2', 'rack-a');
SELECT pankha.ingest('box-1', pg_temp.frame(
    '[{"id": "cpu_temp", "temperature": 45.25, "type": "cpu", "max_temp": 85, "crit_temp": 95},
      {"id": "gpu_temp", "temperature": 61.5, "type": "gpu"}]',
    '[{"id": "cpu_fan", "speed": 60, "rpm": 1200, "targetSpeed": 60, "status": "ok"},
      {"id": "rear_fan", "speed": 40, "rpm": 0, "status": "ok"}]'));
SELECT pankha.ingest('box-3', pg_temp.frame('[{"id": "cpu_temp", "temperature": 38, "type": "cpu"}]',
                                           '[{"id": "cpu_fan", "speed": 30, "rpm": 700}]'));
SELECT pankha.connection_opened('box-1', 'bridge-a', '10.0.0.1') AS conn1 \gset
SELECT pankha.connection_closed(:conn1, 1006, 'network');
SELECT pankha.connection_opened('box-1', 'bridge-b', '10.0.0.1') > 0 AS reconnected;
DELETE FROM pankha.commands;
SET ROLE api_test_bridge;

-- Roles: a role that is not one, no role, bad args, a bad user name.
SELECT pg_temp.api('fleet', 'root');
SELECT pg_temp.api('fleet', NULL);
SELECT pg_temp.api('fleet', 'viewer', '[1]');
SELECT pg_temp.err($$SELECT pankha.api_fleet(repeat('x', 65), 'viewer')$$);
SELECT pg_temp.api('fleet', 'viewer', NULL) = pg_temp.api('fleet', 'viewer', '{}') AS null_args_are_empty;

-- Fleet overview, paged by agent id with the total of the filter.
SELECT pg_temp.api('fleet', 'viewer', '{"page_size": 2}');
SELECT pg_temp.api('fleet', 'viewer',
                   jsonb_build_object('page_size', '2',
                                      'cursor', pg_temp.call('fleet', 'viewer', '{"page_size": 2}') ->> 'next_cursor'));
SELECT pg_temp.api('fleet', 'viewer', '{"group": "rack-a", "page_size": 1}') :: jsonb -> 'items' -> 0 ->> 'agent_id' AS first_in_rack,
       (pg_temp.call('fleet', 'viewer', '{"group": "rack-a"}') ->> 'total') AS in_rack;
SELECT pg_temp.call('fleet', 'viewer', '{"status": "online"}') -> 'items' @? '$[*] ? (@.agent_id == "box-1")' AS online_has_box1,
       pg_temp.call('fleet', 'viewer', '{"status": "offline"}') ->> 'total' AS offline;
SELECT jsonb_path_query_array(pg_temp.call('fleet', 'viewer', '{"q": "3.LAN"}'), '$.items[*].agent_id') AS q_3lan,
       jsonb_path_query_array(pg_temp.call('fleet', 'viewer', '{"q": "%"}'), '$.items[*].agent_id') AS q_percent;
SELECT pg_temp.api('fleet', 'viewer', '{"page_size": 0}');
SELECT pg_temp.api('fleet', 'viewer', '{"page_size": 1001}');
SELECT pg_temp.api('fleet', 'viewer', '{"page_size": "ten"}');
SELECT pg_temp.api('fleet', 'viewer', '{"page_size": 2.5}');
SELECT pg_temp.api('fleet', 'viewer', '{"status": "asleep"}');
SELECT pg_temp.api('fleet', 'viewer', '{"group": 7}');
SELECT pg_temp.api('fleet', 'viewer', '{"cursor": "not a cursor"}');
SELECT pg_temp.api('fleet', 'viewer', jsonb_build_object('cursor', pg_temp.cursor('{a,b}')));

-- Agent detail: catalog, latest values, settings with their source,
-- connection history.
RESET ROLE;
SELECT pankha.set_setting('global', 'update_interval', '5');
SELECT pankha.set_setting('group:rack-a', 'log_level', '"debug"');
SELECT pankha.set_setting('agent:box-1', 'fan_step', '10');
SELECT pankha.create_profile('balanced', '[[30, 25], [70, 100]]');
SELECT pankha.assign_profile('box-1', 'cpu_fan', 'balanced', 'cpu_temp') IS NOT NULL;
DELETE FROM pankha.commands;
SET ROLE api_test_bridge;
SELECT jsonb_pretty(pg_temp.api('agent', 'viewer', '{"agent_id": "box-1", "connections": 5}')::jsonb);
SELECT jsonb_array_length(pg_temp.call('agent', 'viewer', '{"agent_id": "box-1", "connections": 1}') -> 'connections') AS one_connection;
SELECT pg_temp.api('agent', 'viewer', '{"agent_id": "nobody"}');
SELECT pg_temp.api('agent', 'viewer', '{}');
SELECT pg_temp.api('agent', 'viewer', '{"agent_id": "box-1", "connections": 101}');

-- History: several series, bounded points per series.
SELECT jsonb_path_query_array(pg_temp.call('history', 'viewer', '{"agent_id": "box-1", "series": "cpu_temp, rear_fan,cpu_usage"}'),
                              '$.series.keyvalue().key') AS series,
       pg_temp.call('history', 'viewer', '{"agent_id": "box-1", "series": ["cpu_temp"]}') #> '{series,cpu_temp,0,max}' AS cpu_max;
SELECT pg_temp.call('history', 'viewer', jsonb_build_object('agent_id', 'box-1', 'series', 'cpu_temp',
                                                           'from', now() - interval '10 days', 'max_points', 10))
       ->> 'resolution_seconds' AS ten_days_in_ten_points,
       pg_temp.call('history', 'viewer', jsonb_build_object('agent_id', 'box-1', 'series', 'cpu_temp',
                                                           'from', now() - interval '1 hour', 'resolution', 90))
       ->> 'resolution_seconds' AS ninety_seconds_is_two_minutes;
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1", "series": "fan_9"}');
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1"}');
SELECT pg_temp.api('history', 'viewer', jsonb_build_object('agent_id', 'box-1', 'series',
                                                          (SELECT jsonb_agg('s' || i) FROM generate_series(1, 33) i)));
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1", "series": [1]}');
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1", "series": "cpu_temp", "max_points": 5001}');
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1", "series": "cpu_temp", "from": "yesterday-ish"}');
SELECT pg_temp.api('history', 'viewer', '{"agent_id": "box-1", "series": "cpu_temp", "from": "2026-01-02", "to": "2026-01-01"}');

-- Commands: sending is for operators; the answer is the command.
SELECT pg_temp.api('send_command', 'viewer', '{"agent_id": "box-1", "command_type": "set_fan_speed"}');
SELECT pg_temp.api('send_command', 'operator',
                   '{"agent_id": "box-1", "command_type": "set_fan_speed", "parameters": {"fan_id": "cpu_fan", "speed": 80}, "priority": "high", "ttl_seconds": "60"}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "set_fan_speed", "parameters": {"fan_id": "cpu_fan", "speed": 101}}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "set_fan_speed", "parameters": {"fan_id": "nope", "speed": 50}}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "set_fan_speed", "parameters": [1]}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "reboot", "priority": "urgent"}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "reboot", "ttl_seconds": 0}');
-- 361 days: over send_command's 360 (interval '1 year'), refused naming ttl_seconds
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1", "command_type": "reboot", "ttl_seconds": 31190400}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-9", "command_type": "reboot"}');
SELECT pg_temp.api('send_command', 'operator', '{"agent_id": "box-1"}');
-- (one statement each: commands of one transaction share created_at)
SELECT pg_temp.call('send_command', 'admin', '{"agent_id": "box-1", "command_type": "ping_test"}') ->> 'status' AS queued;
SELECT pg_temp.call('send_command', 'operator', '{"agent_id": "box-3", "command_type": "ping_test"}') ->> 'issued_by' AS issued_by;
RESET ROLE;
-- The first command is delivered and fails on the agent.
SELECT count(*) AS claimed FROM pankha.claim_commands('{box-1}', '30 seconds', 1);
SELECT pankha.ack_command('box-1', (SELECT command_id FROM pankha.commands WHERE command_type = 'set_fan_speed'),
                          false, 'pwm1: permission denied');
SET ROLE api_test_bridge;
SELECT pg_temp.api('command', 'viewer',
                   jsonb_build_object('command_id', (SELECT command_id FROM pankha.commands WHERE command_type = 'set_fan_speed')));
SELECT pg_temp.api('command', 'viewer', '{"command_id": "00000000-0000-0000-0000-000000000000"}');
SELECT pg_temp.api('command', 'viewer', '{"command_id": "cmd1"}');
-- Lists: newest first, per agent or fleet-wide, filters, paging.
SELECT jsonb_path_query_array(pg_temp.api('commands', 'viewer')::jsonb, '$.items[*].command_id') AS fleet,
       jsonb_path_query_array(pg_temp.api('commands', 'viewer', '{"agent_id": "box-1"}')::jsonb, '$.items[*].command_id') AS box1,
       jsonb_path_query_array(pg_temp.api('commands', 'viewer', '{"status": "failed"}')::jsonb, '$.items[*].command_id') AS failed,
       jsonb_path_query_array(pg_temp.api('commands', 'viewer', '{"command_type": "ping_test"}')::jsonb, '$.items[*].command_id') AS pings;
SELECT pg_temp.api('commands', 'viewer', '{"page_size": 1}')::jsonb - 'items' AS first_page,
       jsonb_path_query_array(pg_temp.api('commands', 'viewer', jsonb_build_object('page_size', 2,
           'cursor', pg_temp.call('commands', 'viewer', '{"page_size": 1}') ->> 'next_cursor'))::jsonb,
           '$.items[*].command_id') AS after_first;
SELECT pg_temp.api('commands', 'viewer', '{"status": "lost"}');
SELECT pg_temp.api('commands', 'viewer', '{"agent_id": "box-9"}');
SELECT pg_temp.api('commands', 'viewer', jsonb_build_object('cursor', pg_temp.cursor('{yesterday,x}')));

-- Fan profiles: managed by admins, assigned and applied by operators.
SELECT pg_temp.api('profile_create', 'operator', '{"name": "quiet", "points": [[40, 20], [80, 60]]}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "quiet", "points": [[40, 20], [80, 60]], "hysteresis": 3, "description": "nights"}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "quiet", "points": [[40, 20], [80, 60]]}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "loud", "points": [[40, 20]]}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "loud", "points": [[40, 20], [50, 30]], "step": 1}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "loud", "points": [[40, 20], [50, 30]], "hysteresis": "warm"}');
SELECT pg_temp.api('profile_create', 'admin', '{"name": "loud"}');
SELECT pg_temp.api('profiles', 'viewer');
SELECT pg_temp.api('profiles', 'viewer', jsonb_build_object('page_size', 1,
                   'cursor', pg_temp.call('profiles', 'viewer', '{"page_size": 1}') ->> 'next_cursor'));
SELECT pg_temp.api('profile_update', 'admin', '{"name": "balanced", "points": [[30, 30], [70, 100]], "description": "default"}');
SELECT pg_temp.api('profile_update', 'admin', '{"name": "quiet", "step": 4}') :: jsonb #> '{profile,hysteresis}' AS hysteresis_kept;
SELECT pg_temp.api('profile_update', 'admin', '{"name": "silent", "step": 4}');
SELECT pg_temp.api('profile_update', 'admin', '{"name": "quiet", "points": [[40, 20], [30, 60]]}');
SELECT pg_temp.api('profile_assign', 'viewer', '{"agent_id": "box-1", "fan_id": "rear_fan", "profile": "quiet", "sensor_id": "gpu_temp"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan", "profile": "quiet", "sensor_id": "gpu_temp"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan", "profile": "quiet", "sensor_id": "nvme_temp"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan", "profile": "silent", "sensor_id": "gpu_temp"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "side_fan", "profile": "quiet", "sensor_id": "gpu_temp"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan"}');
SELECT pg_temp.api('profile_apply', 'operator', '{"name": "quiet"}');
SELECT pg_temp.api('profile_apply', 'operator', '{"agent_id": "box-1"}');
SELECT pg_temp.api('profile_apply', 'operator', '{"agent_id": "box-1", "fan_id": "cpu_fan", "name": "quiet"}');
SELECT pg_temp.api('profile_apply', 'operator', '{}');
SELECT pg_temp.api('profile_apply', 'operator', '{"fan_id": "cpu_fan"}');
SELECT pg_temp.api('profile_apply', 'operator', '{"name": "silent"}');
SELECT pg_temp.api('profile_delete', 'admin', '{"name": "quiet"}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan", "unassign": true}');
SELECT pg_temp.api('profile_assign', 'operator', '{"agent_id": "box-1", "fan_id": "rear_fan", "unassign": true}');
SELECT pg_temp.api('profile_delete', 'operator', '{"name": "quiet"}');
SELECT pg_temp.api('profile_delete', 'admin', '{"name": "quiet"}');
SELECT pg_temp.api('profile_delete', 'admin', '{"name": "quiet"}');

-- Fan limits are for admins; fields left out keep their value.
SELECT pg_temp.api('fan_limits', 'operator', '{"agent_id": "box-1", "fan_id": "cpu_fan", "min_speed": 20}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "min_speed": 20, "emergency_temp": 90}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "max_speed": 90}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "emergency_temp": null}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "max_speed": 10}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "min_speed": -1}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "cpu_fan", "emergency_temp": 251}');
SELECT pg_temp.api('fan_limits', 'admin', '{"agent_id": "box-1", "fan_id": "side_fan", "min_speed": 10}');

-- Emergency stop and restore auto: one agent, a group or the fleet, once
-- confirm repeats the target.
SELECT pg_temp.api('emergency_stop', 'viewer', '{"agent_id": "box-1", "confirm": "box-1"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"agent_id": "box-1"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"agent_id": "box-1", "confirm": "box-2"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"agent_id": "box-1", "group": "rack-a", "confirm": "box-1"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"confirm": "fleet"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"group": "rack-b", "confirm": "rack-b"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"agent_id": "box-1", "confirm": "box-1"}');
SELECT pg_temp.api('emergency_stop', 'operator', '{"group": "rack-a", "confirm": "rack-a", "ttl_seconds": 120}');
SELECT pg_temp.api('restore_auto', 'operator', '{"fleet": true, "confirm": "fleet"}');
SELECT agent_id, command_type, priority, count(*) FROM pankha.commands
WHERE command_type IN ('emergency_stop', 'restore_auto') GROUP BY 1, 2, 3 ORDER BY 1, 2;

-- Groups: admins create, rename, delete and set members.
SELECT pg_temp.api('group_create', 'operator', '{"name": "rack-b"}');
SELECT pg_temp.api('group_create', 'admin', '{"name": "rack-b", "description": "the second rack"}');
SELECT pg_temp.api('group_create', 'admin', '{"name": "rack-b"}');
SELECT pg_temp.api('group_create', 'admin', '{"name": ""}');
SELECT pg_temp.api('groups', 'viewer');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": ["box-2", "box-3"]}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": ["box-3"]}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": ["box-1"], "mode": "add"}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": ["box-1"], "mode": "remove"}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-a", "agent_ids": ["box-1"], "mode": "add"}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": ["box-1", "box-7"]}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": "box-1"}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-b", "agent_ids": [], "mode": "swap"}');
SELECT pg_temp.api('group_members', 'admin', '{"name": "rack-z", "agent_ids": []}');
SELECT agent_id, group_name FROM pankha.agent_group_members ORDER BY 1;
SELECT pg_temp.api('group_update', 'admin', '{"name": "rack-a", "new_name": "rack-b"}');
SELECT pg_temp.api('group_update', 'admin', '{"name": "rack-a", "new_name": "row-1", "description": "renamed"}');
SELECT agent_id, group_name FROM pankha.agent_group_members ORDER BY 1;
SELECT scope, key, value FROM pankha.settings ORDER BY 1, 2;
SELECT pg_temp.api('group_delete', 'operator', '{"name": "rack-b"}');
SELECT pg_temp.api('group_delete', 'admin', '{"name": "rack-b"}');
SELECT pg_temp.api('group_delete', 'admin', '{"name": "rack-b"}');

-- Settings: definitions for forms, values by scope, set and clear.
SELECT jsonb_pretty(pg_temp.call('setting_definitions', 'viewer') -> 'items' -> 0);
SELECT jsonb_array_length(pg_temp.call('setting_definitions', 'viewer') -> 'items') AS definitions;
SELECT pg_temp.api('settings', 'viewer', '{"scope": "global"}');
SELECT pg_temp.api('settings', 'viewer', '{"scope": "group:row-1"}');
SELECT pg_temp.api('settings', 'viewer', '{"scope": "group:row-9"}');
SELECT pg_temp.api('settings', 'viewer', '{"scope": "planet"}');
SELECT pg_temp.api('settings', 'viewer', '{}');
SELECT pg_temp.api('setting_set', 'viewer', '{"scope": "global", "key": "update_interval", "value": 2}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "global", "key": "update_interval", "value": 2}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "agent:box-3", "key": "log_level", "value": "warn"}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "agent:box-3", "key": "log_level", "clear": true}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "global", "key": "update_interval", "value": 99}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "global", "key": "update_interval", "value": "fast"}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "global", "key": "colour", "value": 1}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "global", "key": "update_interval"}');
SELECT pg_temp.api('setting_set', 'operator', '{"scope": "agent:box-9", "key": "update_interval", "value": 2}');
SELECT key, value, source, scope FROM jsonb_to_recordset(pg_temp.call('agent', 'viewer', '{"agent_id": "box-1"}') -> 'settings')
    AS s(key text, value jsonb, source text, scope text) ORDER BY key;

-- Alert rules: admins manage them, everyone reads them.
SELECT pg_temp.api('alert_rule_create', 'operator', '{"name": "hot", "condition": "temperature_above", "threshold": 50}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "hot", "condition": "temperature_above", "threshold": 50, "severity": "critical"}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "warm-cpu", "condition": "temperature_above", "threshold": 40, "target_id": "cpu_temp", "duration_seconds": 0, "cooldown_seconds": 60}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "hot", "condition": "temperature_above", "threshold": 50}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "too_hot", "threshold": 50}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "temperature_above"}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "agent_offline", "threshold": 5}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "agent_offline", "severity": "meh"}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "agent_offline", "agent_id": "box-9"}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "agent_offline", "group": "rack-9"}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "agent_offline", "cooldown_seconds": -1}');
SELECT pg_temp.api('alert_rule_create', 'admin', '{"name": "x", "condition": "fan_rpm_below", "threshold": 1, "sensor_type": "cpu"}');
SELECT pg_temp.call('alert_rule_create', 'admin', '{"name": "offline", "condition": "agent_offline", "enabled": false}') ->> 'rule_id' AS offline_rule \gset
SELECT pg_temp.api('alert_rules', 'viewer', jsonb_build_object('cursor', pg_temp.call('alert_rules', 'viewer', '{"page_size": 2}') ->> 'next_cursor'));
SELECT pg_temp.api('alert_rules', 'viewer', '{"page_size": 2}');
SELECT pg_temp.api('alert_rule_update', 'admin', jsonb_build_object('rule_id', :offline_rule, 'enabled', true, 'group', 'row-1', 'duration_seconds', 120));
SELECT pg_temp.api('alert_rule_update', 'admin', jsonb_build_object('rule_id', :offline_rule, 'threshold', 10));
SELECT pg_temp.api('alert_rule_update', 'admin', jsonb_build_object('rule_id', :offline_rule, 'name', 'hot'));
SELECT pg_temp.api('alert_rule_update', 'admin', '{"rule_id": 99, "enabled": true}');
SELECT pg_temp.api('alert_rule_update', 'admin', '{"enabled": true}');
SELECT pg_temp.api('alert_rule_delete', 'operator', jsonb_build_object('rule_id', :offline_rule));
SELECT pg_temp.api('alert_rule_delete', 'admin', jsonb_build_object('rule_id', :offline_rule));
SELECT pg_temp.api('alert_rule_delete', 'admin', jsonb_build_object('rule_id', :offline_rule));

-- Alerts: silence one series of "warm-cpu" before the worker judges the
-- rules; "hot" fires for box-1's gpu, "warm-cpu" only for box-1's cpu,
-- which is silenced.
SELECT pg_temp.api('alert_silence', 'viewer', '{"rule_id": 2, "agent_id": "box-1", "until": "2099-01-01"}');
SELECT pg_temp.api('alert_silence', 'operator', jsonb_build_object('rule_id', 2, 'agent_id', 'box-1', 'target_id', 'cpu_temp',
                                                                   'until', now() + interval '1 hour', 'comment', 'known, fixing'));
SELECT pg_temp.api('alert_silence', 'operator', '{"rule_id": 2, "target_id": "cpu_temp", "until": "2099-01-01"}');
SELECT pg_temp.api('alert_silence', 'operator', '{"rule_id": 2, "until": "2001-01-01"}');
SELECT pg_temp.api('alert_silence', 'operator', '{"rule_id": 2}');
SELECT pg_temp.api('alert_silence', 'operator', '{"rule_id": 9, "until": "2099-01-01"}');
SELECT pg_temp.api('alert_silence', 'operator', '{"rule_id": 2, "agent_id": "box-9", "until": "2099-01-01"}');
RESET ROLE;
UPDATE pankha.agents SET status = 'online';
LISTEN pankha_alert;
\o :notify_file
SELECT * FROM pankha.evaluate_alerts();
\o
SELECT regexp_replace(n, '\d{4}-\d\d-\d\dT[0-9:.]+[+-][0-9:]+', '<time>', 'g') FROM pg_temp.notifications(:'notify_file') n;
UNLISTEN *;
SET ROLE api_test_bridge;
SELECT pg_temp.api('alerts', 'viewer');
SELECT pg_temp.api('alert_silences', 'viewer');
-- Lifting the silence lets it fire on the next pass.
SELECT pg_temp.api('alert_unsilence', 'operator', '{"silence_id": 1}');
SELECT pg_temp.api('alert_unsilence', 'operator', '{"silence_id": 1}') :: jsonb ->> 'active' AS still_lifted;
SELECT pg_temp.api('alert_unsilence', 'operator', '{"silence_id": 5}');
RESET ROLE;
SELECT fired, resolved FROM pankha.evaluate_alerts();
SET ROLE api_test_bridge;
SELECT pg_temp.api('alert_silences', 'viewer') AS none_in_force,
       jsonb_array_length(pg_temp.call('alert_silences', 'viewer', '{"active": false}') -> 'items') AS all_silences;
-- Acknowledging: operators, once; the dashboards hear of it.
SELECT pg_temp.api('alert_ack', 'viewer', '{"alert_id": 1}');
LISTEN pankha_alert;
\o :notify_file
SELECT pg_temp.api('alert_ack', 'operator', '{"alert_id": 1, "comment": "on it"}');
\o
RESET ROLE;
SELECT regexp_replace(n, '\d{4}-\d\d-\d\dT[0-9:.]+[+-][0-9:]+', '<time>', 'g') FROM pg_temp.notifications(:'notify_file') n;
UNLISTEN *;
SET ROLE api_test_bridge;
SELECT pg_temp.api('alert_ack', 'operator', '{"alert_id": "1"}') :: jsonb ->> 'ack_comment' AS first_comment_kept;
SELECT pg_temp.api('alert_ack', 'operator', '{"alert_id": 42}');
SELECT pg_temp.api('alert_ack', 'operator', '{"alert_id": "one"}');
-- Listing by state, severity, agent, rule, time, acknowledgement; paged.
SELECT jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"severity": "critical"}'), '$.items[*].rule') AS critical,
       jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"acknowledged": false}'), '$.items[*].alert_id') AS unacked,
       jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"state": "resolved"}'), '$.items[*].alert_id') AS resolved,
       jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"agent_id": "box-3"}'), '$.items[*].alert_id') AS box3,
       jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"rule_id": 2}'), '$.items[*].alert_id') AS rule2,
       jsonb_path_query_array(pg_temp.call('alerts', 'viewer', '{"from": "2099-01-01"}'), '$.items[*].alert_id') AS future;
SELECT jsonb_path_query_array(pg_temp.call('alerts', 'viewer', jsonb_build_object('page_size', 1,
           'cursor', pg_temp.call('alerts', 'viewer', '{"page_size": 1}') ->> 'next_cursor')), '$.items[*].alert_id') AS second_page;
SELECT pg_temp.api('alerts', 'viewer', '{"state": "burning"}');
SELECT pg_temp.api('alerts', 'viewer', '{"to": "soon"}');

-- The audit log is for admins: who did what, filtered and paged.
SELECT pg_temp.api('audit', 'operator');
SELECT event, agent_id, ui_user FROM jsonb_to_recordset(pg_temp.call('audit', 'admin', '{"action": "alert.*", "page_size": 10}') -> 'items')
    AS l(event text, agent_id text, ui_user text);
SELECT event, agent_id, ui_user, details ->> 'command_type' AS type
FROM jsonb_to_recordset(pg_temp.call('audit', 'admin', '{"actor": "oscar", "action": "command.issued", "agent_id": "box-3"}') -> 'items')
    AS l(event text, agent_id text, ui_user text, details jsonb);
SELECT count(*) AS alice_alert_rules FROM jsonb_array_elements(pg_temp.call('audit', 'admin', '{"actor": "alice", "action": "alert_rule.*"}') -> 'items');
SELECT (SELECT array_agg(x ->> 'audit_id') FROM jsonb_array_elements(p1 -> 'items') x)
       && (SELECT array_agg(x ->> 'audit_id') FROM jsonb_array_elements(
               pg_temp.call('audit', 'admin', jsonb_build_object('page_size', 3, 'cursor', p1 ->> 'next_cursor')) -> 'items') x)
       AS pages_overlap
FROM (SELECT pg_temp.call('audit', 'admin', '{"page_size": 3}') AS p1) p;
SELECT jsonb_array_length(pg_temp.call('audit', 'admin', '{"from": "2099-01-01"}') -> 'items') AS future;
SELECT pg_temp.api('audit', 'admin', '{"actor": 1}');

-- Reports over a range.
SELECT jsonb_path_query_array(pg_temp.call('agent_report', 'viewer', '{"agent_id": "box-1"}'),
                              '$.keyvalue().key') AS report_fields;
SELECT pg_temp.call('agent_report', 'viewer', '{"agent_id": "box-1"}') -> 'commands' AS box1_commands;
SELECT jsonb_path_query_array(pg_temp.call('fleet_report', 'viewer', '{"page_size": 2}'), '$.items[*].agent_id') AS page1,
       pg_temp.call('fleet_report', 'viewer', '{"page_size": 2}') ->> 'next_cursor' IS NOT NULL AS more;
SELECT pg_temp.api('fleet_report', 'viewer', '{"page_size": 101}');
SELECT pg_temp.api('fleet_report', 'viewer', '{"from": "2026-01-01", "to": "2026-03-01"}');
SELECT pg_temp.api('agent_report', 'viewer', '{"agent_id": "box-1", "from": "2026-01-02", "to": "2026-01-01"}');

-- Tokens: admins create, list (never with secrets) and revoke them.
SELECT pg_temp.api('token_create', 'operator', '{"kind": "ui", "user_name": "eve", "role": "admin"}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "ui", "user_name": "victor", "role": "viewer", "comment": "wall screen", "expires_in_seconds": 86400}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "enrollment", "comment": "rack b", "max_uses": 10}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "agent"}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "ui", "user_name": "eve", "role": "root"}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "ui", "role": "viewer"}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "enrollment", "max_uses": 0}');
SELECT pg_temp.api('token_create', 'admin', '{"kind": "enrollment", "expires_in_seconds": 1}');
-- The new dashboard token works at once.
SELECT user_name, role FROM pankha.authenticate_ui(
    (SELECT pg_temp.call('token_create', 'admin', '{"kind": "ui", "user_name": "walt", "role": "operator"}') ->> 'token'));
SELECT pg_temp.api('tokens', 'admin', '{"kind": "ui"}');
SELECT count(*) AS listed, bool_or(x ? 'token_hash' OR x ? 'selector' OR x ? 'token') AS secrets_shown
FROM jsonb_array_elements(pg_temp.call('tokens', 'admin') -> 'items') x;
SELECT pg_temp.api('token_revoke', 'admin', '{"token_id": 5}');
SELECT pg_temp.api('token_revoke', 'admin', '{"token_id": 5}') :: jsonb ->> 'revoked' AS revoked_again;
SELECT pg_temp.api('token_revoke', 'admin', '{"token_id": 500}');
SELECT pg_temp.api('tokens', 'admin', '{"active": false}') :: jsonb #>> '{items,0,token_id}' AS inactive;
SELECT pg_temp.api('tokens', 'viewer');

-- The bounds the bridge publishes.
SELECT pankha.api_limits();
RESET ROLE;
DROP ROLE api_test_bridge;
DROP ROLE api_test_nobody;
