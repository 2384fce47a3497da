-- Cold blocks of version 1 (payload bytes column-wise) still decode, now
-- that every new block is written as version 2 (issue 16's leftover).
-- The fixture was made by the old encoder, at e4fd58b, the last commit
-- where version 1 was what pankha.compress_before() wrote: one agent's
-- frames from sql/cold_data.psql (setseed(0.17), nagents 2, nframes 600,
-- prefix v1-, day0 2026-11-30), rolled up and compressed; the blocks of
-- v1-1 (data/cold_v1_blocks.copy) and its raw rows before compression
-- (data/cold_v1_raw.copy), both with \copy from that cluster.
\i sql/queue_helpers.psql
SET client_min_messages = warning;
CREATE TEMP TABLE v1_blocks (hour timestamptz, first_ts timestamptz, last_ts timestamptz,
                             received_max timestamptz, frames int, agent_id text, packed bytea);
CREATE TEMP TABLE v1_raw (agent_id text, ts timestamptz, received_at timestamptz, payload bytea,
                          agent_ts timestamptz);
\copy v1_blocks FROM 'data/cold_v1_blocks.copy'
\copy v1_raw FROM 'data/cold_v1_raw.copy'
-- the fixture is what it says: version 1 blocks, and raw frames enough
SELECT count(*) AS blocks, bool_and(get_byte(packed, 0) = 1) AS all_version_1,
       sum(frames) AS frames, (SELECT count(*) FROM v1_raw) AS raw_frames
  FROM v1_blocks;

-- cold_frames: every frame of each block, in order, as it was raw
SELECT b.hour, b.frames,
       (SELECT count(*) FROM pankha.cold_frames(b.packed)) AS decoded,
       (SELECT array_agg(ROW(f.ts, f.received_at, f.payload)::text) FROM pankha.cold_frames(b.packed) f)
       = (SELECT array_agg(ROW(r.ts, r.received_at, r.payload)::text ORDER BY r.ts) FROM v1_raw r
           WHERE r.ts >= b.hour AND r.ts < b.hour + interval '1 hour') AS same_as_raw
  FROM v1_blocks b ORDER BY b.hour;
-- and a window inside a block
SELECT (SELECT array_agg(ROW(f.ts, f.received_at, f.payload)::text)
          FROM v1_blocks b, pankha.cold_frames(b.packed, '2026-11-30 00:20:00+00', '2026-11-30 00:40:00+00') f)
     = (SELECT array_agg(ROW(r.ts, r.received_at, r.payload)::text ORDER BY r.ts) FROM v1_raw r
         WHERE r.ts >= '2026-11-30 00:20:00+00' AND r.ts < '2026-11-30 00:40:00+00') AS window_same_as_raw;

-- cold_series: each series of each block is what payload_values gives on the raw payloads
SELECT count(*) AS series_checked, count(DISTINCT (kind, slot)) AS distinct_series,
       bool_and(same) AS same_as_raw, bool_and(same_window) AS window_same_as_raw FROM (
    SELECT v.kind, v.slot,
           (SELECT array_agg(ROW(u.ts, u.value)::text ORDER BY u.ts)
              FROM pankha.cold_series(b.packed, '-infinity', 'infinity', v.kind, v.slot) u)
           IS NOT DISTINCT FROM
           (SELECT array_agg(ROW(r.ts, w.value)::text ORDER BY r.ts) FROM v1_raw r
              CROSS JOIN LATERAL pankha.payload_values(r.payload) w
             WHERE r.ts >= b.hour AND r.ts < b.hour + interval '1 hour'
               AND w.kind = v.kind AND w.slot = v.slot AND w.value IS NOT NULL) AS same,
           (SELECT array_agg(ROW(u.ts, u.value)::text ORDER BY u.ts)
              FROM pankha.cold_series(b.packed, b.hour + interval '10 minutes', b.hour + interval '25 minutes',
                                      v.kind, v.slot) u)
           IS NOT DISTINCT FROM
           (SELECT array_agg(ROW(r.ts, w.value)::text ORDER BY r.ts) FROM v1_raw r
              CROSS JOIN LATERAL pankha.payload_values(r.payload) w
             WHERE r.ts >= b.hour + interval '10 minutes' AND r.ts < b.hour + interval '25 minutes'
               AND w.kind = v.kind AND w.slot = v.slot AND w.value IS NOT NULL) AS same_window
      FROM v1_blocks b
     CROSS JOIN LATERAL (SELECT DISTINCT w.kind, w.slot FROM v1_raw r, LATERAL pankha.payload_values(r.payload) w
                          WHERE r.ts >= b.hour AND r.ts < b.hour + interval '1 hour') v) s;

-- every value of every frame (speeds and status words too), through cold_frames
SELECT (SELECT array_agg(ROW(f.ts, w.*)::text ORDER BY f.ts, w.kind, w.slot)
          FROM v1_blocks b, pankha.cold_frames(b.packed) f, LATERAL pankha.payload_values(f.payload) w)
     = (SELECT array_agg(ROW(r.ts, w.*)::text ORDER BY r.ts, w.kind, w.slot)
          FROM v1_raw r, LATERAL pankha.payload_values(r.payload) w) AS every_value_same;

-- stored in pankha.frames_cold, the blocks read through pankha.frames (its
-- time filter on the hours included) as the raw rows did
BEGIN;
INSERT INTO pankha.frames_cold (hour, first_ts, last_ts, received_max, frames, agent_id, packed)
SELECT hour, first_ts, last_ts, received_max, frames, 'v1-fixture', packed FROM v1_blocks;
SELECT (SELECT array_agg(ROW(f.ts, f.received_at, f.payload, f.agent_ts)::text ORDER BY f.ts)
          FROM pankha.frames f WHERE f.agent_id = 'v1-fixture')
     = (SELECT array_agg(ROW(r.ts, r.received_at, r.payload, r.agent_ts)::text ORDER BY r.ts) FROM v1_raw r)
       AS frames_view_same,
       (SELECT array_agg(ROW(f.ts, f.payload)::text ORDER BY f.ts)
          FROM pankha.frames f WHERE f.agent_id = 'v1-fixture'
           AND f.ts >= '2026-11-30 00:50:00+00' AND f.ts < '2026-11-30 01:05:00+00')
     = (SELECT array_agg(ROW(r.ts, r.payload)::text ORDER BY r.ts) FROM v1_raw r
         WHERE r.ts >= '2026-11-30 00:50:00+00' AND r.ts < '2026-11-30 01:05:00+00')
       AS filtered_across_hours_same;
ROLLBACK;

-- packed again today, the same frames make a version 2 block that reads the same
SELECT get_byte(p, 0) AS new_version,
       (SELECT array_agg(ROW(f.ts, f.received_at, f.payload)::text) FROM pankha.cold_frames(p) f)
       = (SELECT array_agg(ROW(f.ts, f.received_at, f.payload)::text) FROM pankha.cold_frames(b.packed) f)
       AS same_as_version_1
  FROM v1_blocks b,
       LATERAL (SELECT pankha.cold_pack(array_agg(r.ts ORDER BY r.ts), array_agg(r.received_at ORDER BY r.ts),
                                        array_agg(r.payload ORDER BY r.ts)) AS p
                  FROM v1_raw r WHERE r.ts >= b.hour AND r.ts < b.hour + interval '1 hour') x
 ORDER BY b.hour;
-- a version-1 block cut short is refused as corrupt, not misread
SELECT count(*) FROM v1_blocks b, pankha.cold_frames(substr(b.packed, 1, length(b.packed) - 7)) f;
