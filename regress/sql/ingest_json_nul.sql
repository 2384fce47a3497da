-- simdjson's strings are searched for a NUL (from \u0000) only when the
-- document may hold one; such a frame still goes to PostgreSQL's parser
-- and gets its refusal, alone, in either place (a value or a member name),
-- while an escaped backslash before u0000 is plain text.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
SELECT count(pankha.register_agent('nul-agent', 'nul'));
CREATE FUNCTION nul_frame(s integer, sensors text) RETURNS text LANGUAGE sql
RETURN format('{"timestamp":%s,"sensors":[%s]}',
              (extract(epoch FROM date_trunc('minute', now()) - interval '5 minutes') * 1000)::bigint + s * 1000,
              sensors);
SELECT ord, stored, sqlstate, message
FROM pankha.ingest_many(array_fill('nul-agent'::text, ARRAY[5]),
    ARRAY[nul_frame(1, '{"id":"a\u0000b","temperature":40}'),
          nul_frame(2, '{"id":"cpu","temperature":41,"type":"c\u0000pu"}'),
          nul_frame(3, '{"id":"cpu","temperature":42,"x\u0000":1}'),
          nul_frame(4, '{"id":"back\\u0000slash","temperature":43}'),
          nul_frame(5, '{"id":"cpu","temperature":44}')])
ORDER BY ord;
SELECT sensor_id FROM pankha.sensors WHERE agent_id = 'nul-agent' ORDER BY slot;
SELECT pankha.ingest('nul-agent', nul_frame(6, '{"id":"a\u0000b","temperature":40}'));
DROP FUNCTION nul_frame;
