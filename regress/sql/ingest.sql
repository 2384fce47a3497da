-- pankha.ingest() and its batch forms: storage, idempotency, the catalog,
-- and every validation rule with a valid example beside an invalid one.
CREATE EXTENSION pankha;
SET client_min_messages = warning;

-- A frame of the given fields, timestamped now unless they say otherwise;
-- two calls never share a millisecond (which would make them one frame).
CREATE FUNCTION frame(extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_sleep(0.0015);
    RETURN jsonb_build_object('timestamp', floor(extract(epoch FROM clock_timestamp()) * 1000)) || extra;
END
$$;

-- Sensor and fan arrays of n entries.
CREATE FUNCTION sensors(n integer) RETURNS jsonb LANGUAGE sql
RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', 's' || i, 'temperature', 40 + i % 30)), '[]')
        FROM generate_series(1, n) i);
CREATE FUNCTION fans(n integer) RETURNS jsonb LANGUAGE sql
RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', 'f' || i, 'rpm', 1000 + i, 'speed', 50)), '[]')
        FROM generate_series(1, n) i);

SELECT left(pankha.register_agent('linux-agent-id', 'Test host', 'host1', '{"fan_control": true}'), 4) AS token_prefix;
SELECT left(pankha.register_agent('agent-2', 'Second host'), 4) AS token_prefix;

-- The seed frame from the protocol, as the data object and as the whole message.
SELECT pankha.ingest('linux-agent-id', frame('{"agentId":"linux-agent-id","seq":17,
  "sensors":[{"id":"cpu_temp","temperature":45.2,"type":"cpu","max_temp":85,"crit_temp":95}],
  "fans":[{"id":"cpu_fan","speed":60,"rpm":1200,"targetSpeed":60,"status":"ok"}],
  "systemHealth":{"cpuUsage":25.3,"memoryUsage":45.2,"agentUptime":3600}}')) AS stored;
SELECT pankha.ingest('linux-agent-id', jsonb_build_object('type', 'data', 'data',
  frame('{"timestamp": 0}') || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 60000,
  'sensors', '[{"id":"cpu_temp","temperature":44}]'::jsonb), 'timestamp', '2025-11-05T20:30:00.000Z')) AS stored;

-- Idempotent: the same agent and timestamp stored twice is one frame.
CREATE TABLE resend AS SELECT frame('{"seq": 18, "sensors":[{"id":"cpu_temp","temperature":46}]}') AS f;
SELECT pankha.ingest('linux-agent-id', f) AS first, pankha.ingest('linux-agent-id', f) AS again FROM resend;
SELECT count(*) AS frames FROM pankha.readings WHERE agent_id = 'linux-agent-id';

-- The catalog: ids get slots; a frame may add or drop sensors; limits are kept.
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"a","temperature":30},{"id":"b","temperature":31}]}'));
SELECT pg_sleep(0.002);
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"b","temperature":32,"max_temp":80},{"id":"c","temperature":33,"type":"gpu"}]}'));
SELECT agent_id, sensor_id, slot, kind, max_temp, crit_temp FROM pankha.sensors ORDER BY agent_id, slot;
SELECT agent_id, fan_id, slot, min_speed, max_speed FROM pankha.fans ORDER BY agent_id, slot;
SELECT sensor_id, temperature FROM pankha.sensor_readings WHERE agent_id = 'agent-2' ORDER BY ts, sensor_id;

-- The views.
SELECT sensor_id, temperature FROM pankha.sensor_readings WHERE agent_id = 'linux-agent-id' ORDER BY ts, sensor_id;
SELECT fan_id, rpm, speed, target_speed, status FROM pankha.fan_readings ORDER BY ts;
SELECT cpu_usage, memory_usage, agent_uptime, disk_usage, load1 FROM pankha.health_readings
WHERE agent_id = 'linux-agent-id' ORDER BY ts;
SELECT agent_id, name, seq, temperatures, fans, cpu_usage FROM pankha.latest ORDER BY agent_id;

-- Optional health fields are validated and stored like the rest.
SELECT pankha.ingest('agent-2', frame('{"systemHealth":{"cpuUsage":0,"memoryUsage":100,"agentUptime":0,
  "diskUsage":55.5,"netRxBytesPerSec":1250000,"netTxBytesPerSec":0.5,"load1":1.25}}'));
SELECT cpu_usage, memory_usage, agent_uptime, disk_usage, net_rx_bytes_per_sec, net_tx_bytes_per_sec, load1
FROM pankha.latest WHERE agent_id = 'agent-2';

-- Validation.  Each error names the field path and carries a SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- the frame itself
SELECT pankha.ingest('linux-agent-id', '[1,2]');
SELECT pankha.ingest('linux-agent-id', '"data"');
SELECT pankha.ingest('linux-agent-id', '{"type":"ping"}');
SELECT pankha.ingest('linux-agent-id', '{"type":"data"}');
SELECT pankha.ingest('linux-agent-id', '{"type":"data","data":[1]}');
SELECT pankha.ingest('linux-agent-id', jsonb_build_object('timestamp', 1, 'padding', repeat('x', 1048576)));
-- frames as JSON text, the wire form: parsed once, with the same rules
SELECT pankha.ingest('linux-agent-id', '{"timestamp": 1');
SELECT pankha.ingest('linux-agent-id', '{"timestamp": NaN}');
SELECT pankha.ingest('linux-agent-id', '{"sensors": ' || repeat('[', 100) || repeat(']', 100) || '}');
-- the escape reaches the text parser as written (a jsonb literal would
-- have decoded it first: audit 15)
SELECT pankha.ingest('linux-agent-id', '{"timestamp":' || floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    || ',"sensors":[{"id":"a\u00e9","temperature":41}]}') AS escapes_ok;
SELECT pankha.ingest('linux-agent-id', rtrim(frame()::text, '}') || ', "extra": ' ||
    repeat('[', 60) || repeat(']', 60) || '}') AS nested_60_ok;
SELECT sensor_id FROM pankha.sensors WHERE sensor_id LIKE 'a%' AND agent_id = 'linux-agent-id';
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('padding', repeat('x', 1000000)))) AS under_1mib;
-- the agent
SELECT pankha.ingest('no-such-agent', frame());
SELECT pankha.ingest('linux-agent-id', frame('{"agentId":"agent-2"}'));
SELECT pankha.ingest('', frame());
-- timestamp and seq
SELECT pankha.ingest('linux-agent-id', '{"sensors":[]}');
SELECT pankha.ingest('linux-agent-id', '{"timestamp":"2025-11-05T20:30:00Z"}');
SELECT pankha.ingest('linux-agent-id', '{"timestamp":-1}');
SELECT pankha.ingest('linux-agent-id', jsonb_build_object('timestamp', floor(extract(epoch FROM now() - interval '8 days') * 1000)));
SELECT pankha.ingest('linux-agent-id', jsonb_build_object('timestamp', floor(extract(epoch FROM now() - interval '6 days') * 1000))) AS six_days_old;
SELECT pankha.ingest('linux-agent-id', frame('{"seq":1.5}'));
SELECT pankha.ingest('linux-agent-id', frame('{"seq":-1}'));
-- the bound is printed exactly: 2^53 - 1, not 9.00719925474099e+15 (audit 16)
SELECT pankha.ingest('linux-agent-id', frame('{"seq":9007199254740992}'));
SELECT pankha.ingest('linux-agent-id', frame('{"seq":"7"}'));
-- sensors
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":{"id":"x"}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[7]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"temperature":40}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":12,"temperature":40}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"t","temperature":40},{"id":"cpu_temp"}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":"45"}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":true}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":1e400}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"hot","temperature":250},{"id":"cold","temperature":-50}]}')) AS limits_ok;
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"hot","temperature":250.01}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cold","temperature":-50.5}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":40,"max_temp":300}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":40,"crit_temp":"95"}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"cpu_temp","temperature":40,"type":5}]}'));
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('sensors', jsonb_build_array(jsonb_build_object('id', 'cpu_temp', 'temperature', 40, 'type', repeat('t', 33))))));
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('sensors', jsonb_build_array(jsonb_build_object('id', repeat('i', 64), 'temperature', 40))))) AS id_64_bytes_ok;
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('sensors', jsonb_build_array(jsonb_build_object('id', repeat('i', 65), 'temperature', 40)))));
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('sensors', jsonb_build_array(jsonb_build_object('id', 'é' || repeat('i', 63), 'temperature', 40)))));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"","temperature":40}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"bad\nid","temperature":40}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"bad\u007fid","temperature":40}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"x","temperature":40},{"id":"y","temperature":41},{"id":"x","temperature":42}]}'));
SELECT pankha.ingest('agent-2', frame(jsonb_build_object('sensors', sensors(256)))) AS sensors_256_ok;
SELECT pankha.ingest('agent-2', frame(jsonb_build_object('sensors', sensors(257))));
-- fans
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":0,"speed":0,"targetSpeed":100,"status":"stalled"}]}')) AS fan_limits_ok;
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","speed":50}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":100001}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":-1}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":100000,"speed":100}]}')) AS rpm_100000_ok;
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"speed":100.5}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"speed":-0.1}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"targetSpeed":101}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"status":"spinning"}]}')) AS new_status_word;
SELECT status FROM pankha.fan_readings WHERE agent_id = 'linux-agent-id' AND fan_id = 'f1' ORDER BY ts DESC LIMIT 1;
SELECT count(*) AS dictionary_rows FROM pankha.fan_statuses WHERE status = 'spinning';
SELECT pankha.ingest('linux-agent-id', frame(jsonb_build_object('fans', jsonb_build_array(jsonb_build_object('id', 'f1', 'rpm', 900, 'status', repeat('s', 33))))));
-- a status is no id: its errors say "fan status" (audit 16)
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"status":"bad\tword"}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"status":""}]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900,"status":7}]}'));
-- a full dictionary (as 0.1.0 could leave it) refuses nothing: the words it
-- lacks are carried in the payload
BEGIN;
INSERT INTO pankha.fan_statuses
SELECT c, 'w' || c FROM generate_series((SELECT max(code) + 1 FROM pankha.fan_statuses), 254) c;
SELECT count(*) AS words FROM pankha.fan_statuses;
SELECT * FROM pankha.ingest_many(ARRAY['linux-agent-id', 'linux-agent-id'],
    ARRAY[frame('{"fans":[{"id":"f1","rpm":900,"status":"one-too-many"}]}'),
          frame('{"fans":[{"id":"f1","rpm":900,"status":"ok"}]}')]);
ROLLBACK;
SELECT pankha.ingest('linux-agent-id', frame('{"fans":[{"id":"f1","rpm":900},{"id":"f1","rpm":901}]}'));
SELECT pankha.ingest('agent-2', frame(jsonb_build_object('fans', fans(64)))) AS fans_64_ok;
SELECT pankha.ingest('agent-2', frame(jsonb_build_object('fans', fans(65))));
-- system health
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":[]}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"cpuUsage":100.1}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"memoryUsage":-1}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"diskUsage":101}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"agentUptime":-5}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"netRxBytesPerSec":"fast"}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"netTxBytesPerSec":2e12}}'));
SELECT pankha.ingest('linux-agent-id', frame('{"systemHealth":{"load1":-0.5}}'));
-- unknown fields are ignored; null optional fields count as absent
SELECT pankha.ingest('linux-agent-id', frame('{"firmware":"x","fans":[{"id":"f1","rpm":800,"speed":null,"extra":[1]}],"systemHealth":{"gpuUsage":5}}')) AS unknown_fields_ignored;

-- A rejected frame stores nothing, not even new catalog entries.
SELECT count(*) AS frames_before FROM pankha.readings \gset
SELECT pankha.ingest('linux-agent-id', frame('{"sensors":[{"id":"brand-new","temperature":40},{"id":"bad","temperature":999}]}'));
SELECT count(*) = :frames_before AS nothing_stored,
       NOT EXISTS (SELECT FROM pankha.sensors WHERE sensor_id = 'brand-new') AS no_catalog_row
FROM pankha.readings;

-- A frame more than five minutes ahead is stored at server time and flagged.
SELECT pankha.ingest('agent-2', jsonb_build_object('timestamp', floor(extract(epoch FROM now() + interval '1 hour') * 1000)));
SELECT agent_ts - ts BETWEEN interval '59 minutes' AND interval '61 minutes' AS flagged,
       abs(extract(epoch FROM ts - received_at)) < 1 AS at_server_time
FROM pankha.readings WHERE agent_ts IS NOT NULL;
SELECT pankha.ingest('agent-2', jsonb_build_object('timestamp', floor(extract(epoch FROM now() + interval '4 minutes') * 1000))) AS four_minutes_ahead;
SELECT count(*) AS flagged_frames FROM pankha.readings WHERE agent_ts IS NOT NULL;

-- ingest_batch: all or nothing, errors name the frame.
SELECT pankha.ingest_batch('agent-2', jsonb_build_array(
    frame('{"timestamp": 1000}') || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 10000),
    frame('{"timestamp": 1000}') || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 20000),
    frame('{"timestamp": 1000}') || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 20000))) AS new_frames;
SELECT count(*) AS frames_before FROM pankha.readings \gset
SELECT pankha.ingest_batch('agent-2', jsonb_build_array(
    frame() || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 30000),
    frame('{"fans":[{"id":"x","rpm":"fast"}]}')));
SELECT pankha.ingest_batch('agent-2', jsonb_build_array(frame(), 5));
SELECT pankha.ingest_batch('agent-2', jsonb_build_array(jsonb_build_object('timestamp', floor(extract(epoch FROM now() - interval '8 days') * 1000))));
SELECT pankha.ingest_batch('agent-2', '{"timestamp":1}');
SELECT pankha.ingest_batch('agent-2', '[]') AS empty_batch;
SELECT count(*) = :frames_before AS nothing_stored FROM pankha.readings;

-- ingest_many: frames of many agents; each row says what happened to its frame.
SELECT * FROM pankha.ingest_many(
    ARRAY['linux-agent-id', 'agent-2', 'ghost', 'agent-2', NULL],
    ARRAY[frame('{"seq": 30}') || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 40000),
          frame('{"sensors":[{"id":"a","temperature":300}]}'),
          frame(),
          (SELECT f FROM resend),
          frame()]);
SELECT * FROM pankha.ingest_many(ARRAY['agent-2'], ARRAY[]::jsonb[]);
SELECT * FROM pankha.ingest_many(ARRAY[]::text[], ARRAY[]::jsonb[]);
-- text frames: a broken one is reported, the rest are stored
SELECT ord, stored, sqlstate, message FROM pankha.ingest_many(
    ARRAY['linux-agent-id', 'linux-agent-id', 'linux-agent-id'],
    ARRAY[(frame() || '{"seq": 31}')::text, '{"timestamp":', '[' || repeat('[', 70) || repeat(']', 70) || ']']);
SELECT pankha.ingest_batch('agent-2', '[' || (frame() || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 45000))::text || ']') AS text_batch;
SELECT pankha.ingest_batch('agent-2', '[{"timestamp": 1}');
-- the same frame twice in one call: stored once
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['agent-2', 'agent-2'],
    ARRAY[(SELECT frame() || '{"timestamp": 1}'::jsonb || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 50000)),
          (SELECT frame() || '{"timestamp": 1}'::jsonb || jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 50000))]);

-- a frame stored before among new ones: it alone is reported as already stored
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['linux-agent-id', 'linux-agent-id', 'linux-agent-id'],
    ARRAY[frame(), (SELECT f FROM resend), frame()]);

-- Liveness is kept in shared memory and persisted on demand (by the worker).
SELECT agent_id, frames > 0 AS has_frames, last_seen <= now() AS sane
FROM pankha.agent_liveness() WHERE agent_id IN ('agent-2', 'linux-agent-id') ORDER BY agent_id;
SELECT pankha.flush_liveness() >= 2 AS persisted;
SELECT agent_id, last_seen IS NOT NULL AS seen FROM pankha.agents ORDER BY agent_id;
SELECT pankha.flush_liveness() AS nothing_new;
SELECT frames_stored > 0 AS stored, frames_rejected > 0 AS rejected, agents_tracked >= 2 AS tracked
FROM pankha.ingest_stats();

-- Partitions are days; ingest creates a missing one.
SELECT pankha.ensure_partition('2030-01-02 03:04:05+00')::text;
SELECT pankha.ensure_partition('2030-01-02 23:59:59+00')::text;
SELECT pankha.ensure_partitions('2030-02-01 00:00+00', '2030-02-03 12:00+00') AS days;
SELECT relname FROM pg_class WHERE relname LIKE 'readings_2030%' AND relkind = 'r' ORDER BY 1;

-- Payload decoding refuses what ingest did not write.
SELECT * FROM pankha.decode_temperatures('\x02');
SELECT * FROM pankha.decode_fans('\x0100010000');
SELECT * FROM pankha.decode_health('\x01ff00000000');

-- Deleting an agent drops its catalog; a re-registered agent starts fresh.
DELETE FROM pankha.agents WHERE agent_id = 'agent-2';
SELECT pankha.ingest('agent-2', frame());
SELECT left(pankha.register_agent('agent-2', 'Again'), 4) AS token_prefix;
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"z","temperature":20}]}'));
SELECT sensor_id, slot FROM pankha.sensors WHERE agent_id = 'agent-2';

-- A savepoint rolled back after ingest forgets what ingest learnt in it
-- (here: sensor slots that no longer exist), so the next frame is correct.
BEGIN;
SAVEPOINT s;
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"rolled-back","temperature":20}]}'));
ROLLBACK TO SAVEPOINT s;
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"kept","temperature":21}]}'));
COMMIT;
SELECT sensor_id, slot FROM pankha.sensors WHERE agent_id = 'agent-2' ORDER BY slot;
SELECT sensor_id, temperature FROM pankha.sensor_readings WHERE agent_id = 'agent-2' ORDER BY ts;

-- A subtransaction that begins and aborts inside ingest (an exception block
-- in a trigger) leaves the caches ingest is using alone.
CREATE FUNCTION careful_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
    RETURN NULL;
END
$$;
CREATE TRIGGER careful AFTER INSERT ON pankha.sensors FOR EACH ROW EXECUTE FUNCTION careful_trigger();
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"kept","temperature":22},{"id":"new-1","temperature":23},{"id":"new-2","temperature":24}]}'));
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"new-2","temperature":25},{"id":"new-3","temperature":26}]}'));
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['agent-2', 'agent-2'],
    ARRAY[frame('{"sensors":[{"id":"new-4","temperature":27}]}'),
          frame('{"sensors":[{"id":"new-5","temperature":28}]}')]);
DROP TRIGGER careful ON pankha.sensors;
SELECT sensor_id, slot FROM pankha.sensors WHERE agent_id = 'agent-2' ORDER BY slot;
SELECT sensor_id, temperature FROM pankha.sensor_readings WHERE agent_id = 'agent-2' ORDER BY ts, sensor_id;

-- Dropping and re-creating the extension in one session starts afresh:
-- nothing cached about the old tables (partitions, slots) is used.
DROP EXTENSION pankha CASCADE;
CREATE EXTENSION pankha;
SELECT left(pankha.register_agent('agent-2', 'Anew'), 4) AS token_prefix;
SELECT pankha.ingest('agent-2', frame('{"sensors":[{"id":"fresh","temperature":30}]}'));
SELECT sensor_id, slot FROM pankha.sensors;
SELECT agent_id, sensor_id, temperature FROM pankha.sensor_readings;
