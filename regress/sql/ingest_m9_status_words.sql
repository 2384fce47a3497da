-- M9: the fan-status dictionary cannot be used up by one agent.  Words it
-- does not hold are carried in the payloads of the frames that have them;
-- the dictionary is not added to, and no frame with a new word is refused.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
SELECT left(pankha.register_agent('noisy', 'Free-form statuses'), 4) AS token_prefix;
SELECT left(pankha.register_agent('victim', 'Comes later'), 4) AS token_prefix;
SELECT count(*) AS words_before FROM pankha.fan_statuses;

-- One agent sends 320 distinct status words, 64 fans a frame.
SELECT count(*) FILTER (WHERE stored) AS stored, count(sqlstate) AS refused
FROM pankha.ingest_many(array_fill('noisy'::text, ARRAY[5]),
    ARRAY(SELECT jsonb_build_object(
                     'timestamp', floor(extract(epoch FROM now()) * 1000) - 1000 * f,
                     'fans', (SELECT jsonb_agg(jsonb_build_object('id', 'fan' || i, 'rpm', 1000 + i,
                                                                  'status', 's' || (f * 64 + i)))
                              FROM generate_series(0, 63) i))
          FROM generate_series(0, 4) f));
SELECT count(*) AS words_after FROM pankha.fan_statuses;

-- Another agent's frame with a word nobody sent before is stored, and
-- every word reads back as sent.
SELECT pankha.ingest('victim', jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000),
    'fans', '[{"id":"cpu_fan","rpm":900,"status":"brand-new-word"},
              {"id":"case_fan","rpm":800,"status":"ok"},
              {"id":"gpu_fan","rpm":700}]'::jsonb)) AS stored;
SELECT fan_id, rpm, status FROM pankha.fan_readings WHERE agent_id = 'victim' ORDER BY fan_id;
SELECT count(*) AS readings, count(DISTINCT status) AS words,
       bool_and(substr(status, 2)::int % 64 = substr(fan_id, 4)::int) AS each_on_its_fan
FROM pankha.fan_readings WHERE agent_id = 'noisy';
SELECT agent_id, fans->'cpu_fan'->>'status' AS cpu_fan FROM pankha.latest WHERE agent_id = 'victim';

-- A dictionary word costs one byte; a carried word its length and one.
SELECT octet_length(payload) AS bytes FROM pankha.readings WHERE agent_id = 'victim';

DROP EXTENSION pankha CASCADE;
