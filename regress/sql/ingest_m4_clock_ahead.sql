-- M4: a frame from an agent whose clock is far ahead is stored near the
-- server's time, but keeps its own timestamp as its identity: a re-send
-- (same call, later call, another session after a bridge restart) is
-- stored once, and distinct frames ahead in one call are all stored.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pankha CASCADE;
CREATE EXTENSION pankha;
SELECT left(pankha.register_agent('fast', 'Ten minutes fast'), 4) AS token_prefix;

-- Frames of an agent 10 minutes fast, 3 s apart, with their seq.
CREATE TABLE fast_frames AS
SELECT i AS seq, jsonb_build_object(
           'timestamp', floor(extract(epoch FROM now() + interval '10 minutes') * 1000) + 3000 * i,
           'seq', i, 'sensors', jsonb_build_array(jsonb_build_object('id', 'cpu', 'temperature', 40 + i))) AS f
FROM generate_series(1, 6) i;

SELECT pankha.ingest('fast', f) AS first, pankha.ingest('fast', f) AS again
FROM fast_frames WHERE seq = 1;

-- Two new frames ahead and the re-sent first one, in one call.
SELECT ord, stored, sqlstate FROM pankha.ingest_many(ARRAY['fast', 'fast', 'fast'],
    ARRAY(SELECT f FROM fast_frames WHERE seq IN (2, 3, 1) ORDER BY seq DESC));
SELECT count(*) AS frames, count(DISTINCT ts) AS keys,
       bool_and(abs(extract(epoch FROM ts - received_at)) < 1) AS near_server_time,
       bool_and(agent_ts - ts BETWEEN interval '9 minutes' AND interval '11 minutes') AS claim_kept
FROM pankha.readings WHERE agent_id = 'fast';
SELECT pankha.decode_seq(payload) AS seq, agent_ts = (SELECT to_timestamp((f->>'timestamp')::float8 / 1000)
                                                       FROM fast_frames x WHERE x.seq = pankha.decode_seq(payload)) AS own_ts
FROM pankha.readings WHERE agent_id = 'fast' ORDER BY ts;

-- The same frames one call each, as fast as calls go (several within one
-- millisecond of the server): each gets a key of its own.
SELECT pankha.ingest('fast', f) AS stored FROM fast_frames WHERE seq IN (4, 5, 6) ORDER BY seq;

-- A new session (the bridge was killed and the agent re-sends everything
-- unacknowledged): nothing is stored twice.
\c
SET client_min_messages = warning;
SELECT ord, stored, sqlstate FROM pankha.ingest_many(array_fill('fast'::text, ARRAY[6]),
    ARRAY(SELECT f::text FROM fast_frames ORDER BY seq));
SELECT pankha.ingest_batch('fast', (SELECT jsonb_agg(f ORDER BY seq) FROM fast_frames)) AS new_in_batch;
SELECT count(*) AS frames, count(DISTINCT pankha.decode_seq(payload)) AS seqs
FROM pankha.readings WHERE agent_id = 'fast';

-- The agent's clock came back since: its re-send of a frame stored ahead
-- (18 minutes ago, its timestamp 1 minute ago) is no longer ahead, and is
-- still found.  The earlier row is made as ingest made it then.
SELECT left(pankha.register_agent('was-fast', 'Clock fixed'), 4) AS token_prefix;
SELECT pankha.ensure_partitions(now() - interval '1 day', now());
INSERT INTO pankha.readings (ts, received_at, agent_id, payload, agent_ts)
SELECT now() - interval '18 minutes' + interval '1 microsecond', now() - interval '18 minutes',
       'was-fast', payload, date_trunc('milliseconds', now() - interval '1 minute')
FROM pankha.readings WHERE agent_id = 'fast' LIMIT 1;
\c
SET client_min_messages = warning;
SELECT pankha.ingest('was-fast', jsonb_build_object(
    'timestamp', extract(epoch FROM agent_ts) * 1000, 'seq', 1)) AS stored_again
FROM pankha.readings WHERE agent_id = 'was-fast';
SELECT pankha.ingest('was-fast', jsonb_build_object(
    'timestamp', floor(extract(epoch FROM now()) * 1000), 'seq', 2)) AS new_frame_stored;
SELECT count(*) AS frames FROM pankha.readings WHERE agent_id = 'was-fast';

DROP EXTENSION pankha CASCADE;
