-- The sensor and fan catalog as ingest_many fills it: every new id of a
-- batch is recorded with one call, slots follow the order of first sight
-- per agent, metadata changes are kept, and an agent that has used up its
-- slots has only its own frame refused.
CREATE EXTENSION pankha;
SET client_min_messages = warning;

SELECT count(pankha.register_agent(a, a)) FROM unnest(ARRAY['cat-a', 'cat-b', 'cat-full']) a;

-- A frame at second s after a fixed recent minute, with these sensors and fans.
CREATE TABLE base AS SELECT date_trunc('minute', now()) - interval '10 minutes' AS t;
CREATE FUNCTION f(s integer, sensors text, fans text DEFAULT '') RETURNS text LANGUAGE sql
RETURN format('{"timestamp":%s,"sensors":[%s],"fans":[%s]}',
              ((extract(epoch FROM (SELECT t FROM base)) + s) * 1000)::bigint, sensors, fans);

-- Two new agents in one batch, cat-a twice (its second frame adds a sensor
-- and changes a limit), an unregistered agent and a broken frame between.
SELECT ord, stored, sqlstate, message
FROM pankha.ingest_many(
    ARRAY['cat-a', 'cat-b', 'nobody', 'cat-a', 'cat-b'],
    ARRAY[f(1, '{"id":"cpu","temperature":50,"type":"cpu","max_temp":80},{"id":"gpu","temperature":60}',
               '{"id":"fan1","rpm":900}'),
          f(1, '{"id":"board","temperature":30}', '{"id":"fan9","rpm":700},{"id":"fan8","rpm":800}'),
          f(1, '{"id":"x","temperature":1}'),
          f(2, '{"id":"cpu","temperature":51,"max_temp":82},{"id":"nvme","temperature":40},{"id":"gpu","temperature":61}',
               '{"id":"fan1","rpm":950}'),
          f(2, '{"id":"board","temperature":"hot"}')])
ORDER BY ord;

SELECT agent_id, sensor_id, slot, kind, max_temp FROM pankha.sensors ORDER BY agent_id, slot;
SELECT agent_id, fan_id, slot FROM pankha.fans ORDER BY agent_id, slot;

-- The stored frames read back with the right ids in the right places.
SELECT agent_id, extract(epoch FROM ts - (SELECT t FROM base)) AS s, sensor_id, temperature
FROM pankha.sensor_readings WHERE agent_id LIKE 'cat-%' ORDER BY 1, 2, 3;
SELECT agent_id, extract(epoch FROM ts - (SELECT t FROM base)) AS s, fan_id, rpm
FROM pankha.fan_readings WHERE agent_id LIKE 'cat-%' ORDER BY 1, 2, 3;

-- A new session (cold cache, one catalog query for the batch) reads the
-- same slots; a re-sent frame is not stored twice.
\c
SELECT ord, stored, sqlstate FROM pankha.ingest_many(
    ARRAY['cat-b', 'cat-a', 'cat-a'],
    ARRAY[f(3, '{"id":"board","temperature":31}', '{"id":"fan8","rpm":801},{"id":"fan9","rpm":701}'),
          f(3, '{"id":"gpu","temperature":62},{"id":"cpu","temperature":52}'),
          f(2, '{"id":"cpu","temperature":51}')]) ORDER BY ord;
SELECT agent_id, sensor_id, temperature FROM pankha.sensor_readings
WHERE agent_id LIKE 'cat-%' AND ts = (SELECT t FROM base) + interval '3 seconds' ORDER BY 1, 2;
SELECT agent_id, fan_id, rpm FROM pankha.fan_readings
WHERE agent_id LIKE 'cat-%' AND ts = (SELECT t FROM base) + interval '3 seconds' ORDER BY 1, 2;

-- cat-full has used 254 of its 255 fan slots: one more fan is recorded,
-- a frame bringing two more is refused (and only that frame).
INSERT INTO pankha.fans (agent_id, fan_id, slot)
SELECT 'cat-full', 'old' || i, i FROM generate_series(0, 253) i;
SELECT ord, stored, sqlstate, message, detail FROM pankha.ingest_many(
    ARRAY['cat-full', 'cat-a', 'cat-full'],
    ARRAY[f(4, '', '{"id":"new1","rpm":1},{"id":"new2","rpm":2}'),
          f(4, '{"id":"cpu","temperature":53}'),
          f(5, '', '{"id":"new1","rpm":1}')]) ORDER BY ord;
SELECT fan_id, slot FROM pankha.fans WHERE agent_id = 'cat-full' AND slot >= 253 ORDER BY slot;
SELECT pankha.ingest('cat-full', f(6, '', '{"id":"new2","rpm":2}'));
SELECT pankha.ingest('cat-full', f(7, '', '{"id":"new1","rpm":3}'));

DROP EXTENSION pankha;
