-- Issue 16: a frame may leave out a sensor's static fields (type, max_temp,
-- crit_temp); an absent one means unchanged.  Agents that send them in
-- every frame (the seed format) and agents that send them only when they
-- change are stored alike, on the single and the batched path, with warm
-- and cold caches.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
SELECT count(pankha.register_agent(a, a)) FROM unnest(ARRAY['meta-seed', 'meta-sparse', 'meta-late']) a;

CREATE TABLE meta_base AS SELECT date_trunc('minute', now()) - interval '10 minutes' AS t;
CREATE FUNCTION meta_f(s integer, sensors text) RETURNS text LANGUAGE sql
RETURN format('{"timestamp":%s,"sensors":[%s],"fans":[{"id":"fan1","rpm":%s,"speed":40,"targetSpeed":40,"status":"ok"}]}',
              ((extract(epoch FROM (SELECT t FROM meta_base)) + s) * 1000)::bigint, sensors, 900 + s);
CREATE FUNCTION full_sensors(s integer, cpu_max integer DEFAULT 85) RETURNS text LANGUAGE sql
RETURN format('{"id":"cpu","temperature":%s,"type":"cpu","max_temp":%s,"crit_temp":95},'
              '{"id":"gpu","temperature":%s,"type":"gpu","crit_temp":100}', 40 + s, cpu_max, 50 + s);
CREATE FUNCTION bare_sensors(s integer) RETURNS text LANGUAGE sql
RETURN format('{"id":"cpu","temperature":%s},{"id":"gpu","temperature":%s}', 40 + s, 50 + s);

-- The seed format: everything in every frame, one call per frame and a batch.
SELECT pankha.ingest('meta-seed', meta_f(1, full_sensors(1))::jsonb) AS stored;
SELECT pankha.ingest('meta-seed', meta_f(2, full_sensors(2))) AS stored;
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['meta-seed', 'meta-seed'],
    ARRAY[meta_f(3, full_sensors(3)), meta_f(4, full_sensors(4))]) ORDER BY ord;

-- Only what changes: the first frame has everything, then readings alone,
-- then a frame that changes one limit of one sensor, then readings again.
SELECT pankha.ingest('meta-sparse', meta_f(1, full_sensors(1))) AS stored;
SELECT pankha.ingest('meta-sparse', meta_f(2, bare_sensors(2))) AS stored;
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['meta-sparse', 'meta-sparse', 'meta-sparse'],
    ARRAY[meta_f(3, bare_sensors(3)),
          meta_f(4, '{"id":"cpu","temperature":44,"max_temp":90},{"id":"gpu","temperature":54}'),
          meta_f(5, bare_sensors(5))]) ORDER BY ord;
SELECT agent_id, sensor_id, slot, kind, max_temp, crit_temp FROM pankha.sensors
WHERE agent_id LIKE 'meta-%' ORDER BY agent_id, slot;

-- A new session (cold caches): readings alone still keep the catalog.
\c
SET client_min_messages = warning;
SELECT pankha.ingest('meta-sparse', meta_f(6, bare_sensors(6))) AS stored;
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['meta-sparse', 'meta-seed'],
    ARRAY[meta_f(7, bare_sensors(7)), meta_f(5, full_sensors(5, 88))]) ORDER BY ord;

-- An agent whose first frame has no static fields: unknown until one says.
SELECT pankha.ingest('meta-late', meta_f(1, bare_sensors(1))) AS stored;
SELECT sensor_id, kind, max_temp, crit_temp FROM pankha.sensors WHERE agent_id = 'meta-late' ORDER BY slot;
SELECT pankha.ingest('meta-late', meta_f(2, '{"id":"cpu","temperature":42,"type":"cpu"},{"id":"gpu","temperature":52,"crit_temp":101}')) AS stored;
SELECT pankha.ingest('meta-late', meta_f(3, bare_sensors(3))) AS stored;

SELECT agent_id, sensor_id, slot, kind, max_temp, crit_temp FROM pankha.sensors
WHERE agent_id LIKE 'meta-%' ORDER BY agent_id, slot;

-- Every frame is stored with its readings, whichever form it had.
SELECT agent_id, extract(epoch FROM ts - (SELECT t FROM meta_base)) AS s, sensor_id, temperature
FROM pankha.sensor_readings WHERE agent_id LIKE 'meta-%' ORDER BY 1, 2, 3;
SELECT agent_id, count(*) AS frames, min(rpm) AS min_rpm, max(rpm) AS max_rpm
FROM pankha.fan_readings WHERE agent_id LIKE 'meta-%' GROUP BY 1 ORDER BY 1;

DROP FUNCTION meta_f, full_sensors, bare_sensors;
DROP TABLE meta_base;
