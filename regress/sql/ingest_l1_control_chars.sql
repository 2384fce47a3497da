-- L1: a frame with a NUL byte or a C1 control character is refused alone,
-- by the same rule in C and SQL whatever the locale, and never fails an
-- ingest_many batch.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
\set regression_db :DBNAME
SELECT left(pankha.register_agent('good-1', 'Good'), 4) AS token_prefix;
SELECT left(pankha.register_agent('odd', 'Sends control characters'), 4) AS token_prefix;

-- The SQL rule, by code point: C0, DEL and C1 are control characters;
-- U+00A0 (no-break space) and U+2028 (line separator) are not.
CREATE FUNCTION id_cases(OUT id text, OUT valid boolean) RETURNS SETOF record LANGUAGE sql AS $$
    SELECT x, pankha.valid_id(x) FROM unnest(ARRAY[E'a\u0001', E'a\u001f', E'a\u007f', E'a\u0080',
                                                   E'a\u0085', E'a\u009f', E'a\u00a0', E'a\u2028',
                                                   'plain']) AS x
$$;
SELECT to_hex(ascii(right(id, 1))) AS last_char, valid FROM id_cases();
-- the same in databases of other locales
CREATE DATABASE l1_c TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE l1_utf8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8';
\c l1_c
CREATE EXTENSION pankha;
SELECT string_agg(valid::text, ',' ORDER BY ascii(right(x, 1))) AS c_locale
FROM unnest(ARRAY[E'a\u0085', E'a\u009f', E'a\u00a0', E'a\u2028']) AS x, LATERAL (SELECT pankha.valid_id(x) AS valid) v;
\c l1_utf8
CREATE EXTENSION pankha;
SELECT string_agg(valid::text, ',' ORDER BY ascii(right(x, 1))) AS utf8_locale
FROM unnest(ARRAY[E'a\u0085', E'a\u009f', E'a\u00a0', E'a\u2028']) AS x, LATERAL (SELECT pankha.valid_id(x) AS valid) v;
\c :regression_db
SET client_min_messages = warning;
DROP DATABASE l1_c;
DROP DATABASE l1_utf8;

-- Frames with control characters where ids go (sensor id, fan status,
-- sensor type; escaped and raw), among good frames of another agent, in
-- one call: each bad frame is refused with its field named, the others
-- are stored, and nothing reaches the catalog's CHECKs.
CREATE FUNCTION frame_at(ms_ago integer, body text) RETURNS text LANGUAGE sql
RETURN '{"timestamp":' || (floor(extract(epoch FROM now()) * 1000) - ms_ago)::bigint || ',' || body || '}';
SELECT ord, stored, sqlstate, message, detail FROM pankha.ingest_many(
    ARRAY['good-1', 'odd', 'good-1', 'odd', 'odd', 'good-1', 'odd'],
    ARRAY[frame_at(1000, '"sensors":[{"id":"cpu","temperature":40}]'),
          frame_at(1000, '"sensors":[{"id":"nel\u0085","temperature":40}]'),
          frame_at(2000, '"sensors":[{"id":"cpu","temperature":41}]'),
          frame_at(2000, E'"fans":[{"id":"f1","rpm":900,"status":"ok\u0085"}]'),
          frame_at(3000, E'"sensors":[{"id":"cpu","temperature":40,"type":"c\u009fpu"}]'),
          frame_at(3000, E'"sensors":[{"id":"ls\u2028ok","temperature":42}]'),
          frame_at(4000, '"sensors":[{"id":"ctl\u0001","temperature":40}]')]);
SELECT agent_id, count(*) AS frames FROM pankha.readings GROUP BY 1 ORDER BY 1;
SELECT agent_id, sensor_id FROM pankha.sensors ORDER BY 1, 2;
-- one frame at a time: the same refusal
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT pankha.ingest('odd', frame_at(5000, '"sensors":[{"id":"nel\u0085","temperature":40}]'));
\set VERBOSITY terse

-- A raw NUL byte (or bytes that are not UTF-8) cannot be passed as text:
-- the text[] argument would fail the whole call on input.  Given as bytes,
-- the frame is refused alone.
SELECT ord, stored, sqlstate, message, detail FROM pankha.ingest_many(
    ARRAY['good-1', 'odd', 'good-1', 'odd', 'good-1'],
    ARRAY[convert_to(frame_at(6000, '"seq":1'), 'UTF8'),
          convert_to(frame_at(6000, '"sensors":[{"id":"nul-'), 'UTF8') || '\x00'::bytea ||
              convert_to('","temperature":40}]}', 'UTF8'),
          convert_to(frame_at(7000, '"seq":2'), 'UTF8'),
          convert_to(frame_at(7000, '"sensors":[{"id":"bad-'), 'UTF8') || '\xff'::bytea ||
              convert_to('","temperature":40}]}', 'UTF8'),
          convert_to(frame_at(8000, E'"sensors":[{"id":"caf\u00e9","temperature":43}]'), 'UTF8')]);
SELECT agent_id, count(*) AS frames FROM pankha.readings GROUP BY 1 ORDER BY 1;
SELECT sensor_id FROM pankha.sensors WHERE agent_id = 'good-1' ORDER BY 1;

DROP EXTENSION pankha CASCADE;
