-- M10: a payload's size follows its frame, not the agent's history of
-- sensor slots: a frame naming one sensor whose slot is high stays small.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
SELECT left(pankha.register_agent('many-ids', 'Burns through slots'), 4) AS token_prefix;

-- 8 frames of 256 new sensor ids each: slots 0 to 2047.
SELECT count(*) FILTER (WHERE stored) AS stored, count(sqlstate) AS refused
FROM pankha.ingest_many(array_fill('many-ids'::text, ARRAY[8]),
    ARRAY(SELECT jsonb_build_object(
                     'timestamp', floor(extract(epoch FROM now()) * 1000) - 60000 + 1000 * f,
                     'sensors', (SELECT jsonb_agg(jsonb_build_object('id', 't' || (f * 256 + i),
                                                                     'temperature', 30 + i % 40))
                                 FROM generate_series(0, 255) i))
          FROM generate_series(0, 7) f));
SELECT max(slot) AS highest_slot FROM pankha.sensors WHERE agent_id = 'many-ids';

-- Then frames naming only the sensor in the highest slot, or two far apart.
SELECT pankha.ingest('many-ids', jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 2000,
    'seq', 9, 'sensors', '[{"id":"t2047","temperature":55.5}]'::jsonb)) AS stored;
SELECT pankha.ingest('many-ids', jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 1000,
    'seq', 10, 'sensors', '[{"id":"t2047","temperature":56},{"id":"t3","temperature":41.25}]'::jsonb)) AS stored;
SELECT pankha.decode_seq(payload) AS seq, octet_length(payload) AS payload_bytes,
       pg_column_size(r.*) AS row_bytes
FROM pankha.readings r WHERE agent_id = 'many-ids' AND pankha.decode_seq(payload) IS NOT NULL ORDER BY ts;
SELECT sensor_id, temperature FROM pankha.sensor_readings
WHERE agent_id = 'many-ids' AND ts > now() - interval '2.5 seconds' ORDER BY ts, sensor_id;
-- a full frame of 256 sensors is as small as it was
SELECT max(octet_length(payload)) AS full_frame_bytes FROM pankha.readings WHERE agent_id = 'many-ids';

DROP EXTENSION pankha CASCADE;
