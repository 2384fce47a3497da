-- Pankha extension: cold storage, part 1 — the compressed table and its
-- codec, which the reading views (10_ingest.sql) read next to the raw rows.
-- The pass that fills it is in 57_cold.sql.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- Frames of past days, one row per agent and UTC hour, packed column-wise
-- and compressed by pankha.cold_pack() (extension/src/cold.c).  A frame
-- is either here or in pankha.readings, never both: the pass moves frames
-- in one transaction, and a late or re-sent frame for a packed hour is
-- stored raw only when it is new (the trigger pankha._cold_dedup() on the
-- partitions the pass has packed), to be folded in by a later pass.
-- Frames stored with agent_ts (an agent clock ahead) stay raw: ingest
-- finds them again by agent_ts.
CREATE TABLE pankha.frames_cold (
    hour         timestamptz NOT NULL,
    first_ts     timestamptz NOT NULL,
    last_ts      timestamptz NOT NULL,
    received_max timestamptz NOT NULL,
    frames       integer NOT NULL CHECK (frames > 0),
    agent_id     text NOT NULL,
    packed       bytea NOT NULL,
    PRIMARY KEY (agent_id, hour),
    CHECK (first_ts >= hour AND last_ts < hour + interval '1 hour' AND first_ts <= last_ts)
);
-- packed is compressed already: keep it out of line without compressing it again.
ALTER TABLE pankha.frames_cold ALTER COLUMN packed SET STORAGE EXTERNAL;
CREATE INDEX frames_cold_hour_idx ON pankha.frames_cold (hour);
CREATE INDEX frames_cold_received_max_idx ON pankha.frames_cold (received_max);
SELECT pg_catalog.pg_extension_config_dump('pankha.frames_cold', '');
COMMENT ON TABLE pankha.frames_cold IS
'Frames of past hours, compressed: one row per agent and UTC hour (frames of them, first_ts to last_ts, received up to received_max).  Read them with the raw ones through pankha.frames and the reading views; written by pankha.compress_before().';

CREATE FUNCTION pankha.cold_pack(ts timestamptz[], received_at timestamptz[], payload bytea[])
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pankha_cold_pack';
COMMENT ON FUNCTION pankha.cold_pack(timestamptz[], timestamptz[], bytea[]) IS
'Pack frames (their times, receive times and payloads, element by element) into one compressed block; pankha.cold_frames() gives them back exactly.';

CREATE FUNCTION pankha.cold_frames(packed bytea,
    from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity',
    OUT ts timestamptz, OUT received_at timestamptz, OUT payload bytea)
RETURNS SETOF record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE ROWS 1200 AS 'MODULE_PATHNAME', 'pankha_cold_frames';
COMMENT ON FUNCTION pankha.cold_frames(bytea, timestamptz, timestamptz) IS
'The frames of a block made by pankha.cold_pack(), in the order packed, those with from_ts <= ts < to_ts.';

CREATE FUNCTION pankha.cold_series(packed bytea, from_ts timestamptz, to_ts timestamptz,
    kind "char", slot smallint, OUT ts timestamptz, OUT value double precision)
RETURNS SETOF record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE ROWS 120 AS 'MODULE_PATHNAME', 'pankha_cold_series';
COMMENT ON FUNCTION pankha.cold_series(bytea, timestamptz, timestamptz, "char", smallint) IS
'One series of the frames of a block made by pankha.cold_pack(), those with from_ts <= ts < to_ts: the value pankha.payload_values() gives for that kind and slot, one row per frame that has it.';

-- Every frame, raw or compressed, in the columns of pankha.readings.
CREATE VIEW pankha.frames AS
SELECT r.ts, r.received_at, r.agent_id, r.payload, r.agent_ts
FROM pankha.readings r
UNION ALL
SELECT u.ts, u.received_at, c.agent_id, u.payload, NULL::timestamptz
FROM pankha.frames_cold c
CROSS JOIN LATERAL pankha.cold_frames(c.packed) u;
COMMENT ON VIEW pankha.frames IS
'Every stored frame, those in pankha.readings and those compressed in pankha.frames_cold, with the columns of pankha.readings.';
