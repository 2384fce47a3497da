-- Pankha extension: schema, agents, the sensor/fan catalog and the compact
-- readings table.  Assembled with the other numbered parts into
-- pankha--<version>.sql by the Makefile.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- An identifier as agents send them: 1..64 bytes, no control characters
-- (C0, DEL, C1), named by code point: [[:cntrl:]] depends on the locale,
-- and ingest's C rules (validate.c) must agree with this one everywhere.
CREATE FUNCTION pankha.valid_id(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN octet_length(id) BETWEEN 1 AND 64 AND id !~ '[\u0001-\u001f\u007f-\u009f]';
COMMENT ON FUNCTION pankha.valid_id(text) IS
'True when an agent, sensor or fan id is 1 to 64 bytes long without control characters.';

CREATE TABLE pankha.agents (
    agent_id      text PRIMARY KEY CHECK (pankha.valid_id(agent_id)),
    name          text NOT NULL,
    hostname      text,
    capabilities  jsonb NOT NULL DEFAULT '{}',
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz,
    status        text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline'))
);
COMMENT ON TABLE pankha.agents IS
'Registered agents. last_seen is persisted from shared memory by the background worker; pankha.agent_liveness() has the live value.';

-- The catalog: every sensor and fan an agent has ever reported, with the
-- slot its value occupies in the compact payload of pankha.readings.  Slots
-- are assigned once and never reused, so old frames stay decodable.
CREATE TABLE pankha.sensors (
    agent_id   text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    sensor_id  text NOT NULL CHECK (pankha.valid_id(sensor_id)),
    slot       smallint NOT NULL CHECK (slot >= 0),
    kind       text,
    label      text,
    max_temp   real,
    crit_temp  real,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, sensor_id),
    UNIQUE (agent_id, slot)
);
COMMENT ON TABLE pankha.sensors IS
'Temperature sensors per agent, recorded by pankha.ingest() the first time a frame carries them.';

CREATE TABLE pankha.fans (
    agent_id       text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    fan_id         text NOT NULL CHECK (pankha.valid_id(fan_id)),
    slot           smallint NOT NULL CHECK (slot >= 0),
    label          text,
    min_speed      real NOT NULL DEFAULT 0 CHECK (min_speed BETWEEN 0 AND 100),
    max_speed      real NOT NULL DEFAULT 100 CHECK (max_speed BETWEEN 0 AND 100),
    emergency_temp real CHECK (emergency_temp BETWEEN 0 AND 250),
    first_seen     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, fan_id),
    UNIQUE (agent_id, slot),
    CHECK (min_speed <= max_speed)
);
COMMENT ON TABLE pankha.fans IS
'Fans per agent with their safety limits (percent of full speed; emergency_temp in degrees Celsius).';

-- One row per frame.  The values live in payload, a compact binary
-- encoding decoded by pankha.decode_*(); the views below unnest it.
--
-- The partitioned tables (this one, rollup_1m, rollup_1h) have no keys or
-- indexes of their own: each partition gets its primary key and indexes
-- when pankha.ensure_time_partition() creates it.  The partitions are made
-- at run time, so they are not members of the extension and pg_dump dumps
-- them with their data and keys like any table of the database, while the
-- parents come back from CREATE EXTENSION.  Were the keys declared on the
-- parent, the restore's ATTACH PARTITION would already build them in each
-- partition and the dumped ADD CONSTRAINT and CREATE INDEX would then fail
-- ("multiple primary keys ... are not allowed").  The partition key ts is
-- part of every partition's primary key, so (agent_id, ts) is still unique
-- across the table, and ingest's ON CONFLICT DO NOTHING sees the key of the
-- partition a frame goes to.
CREATE TABLE pankha.readings (
    -- fixed-width columns first, so no padding is needed between them
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    agent_id    text NOT NULL,
    payload     bytea NOT NULL,
    agent_ts    timestamptz
) PARTITION BY RANGE (ts);
COMMENT ON TABLE pankha.readings IS
'One row per data frame, partitioned by day on ts (the agent clock).  agent_ts is set only when the agent clock was more than 5 minutes ahead: ts is then the receive time.';
COMMENT ON COLUMN pankha.readings.payload IS
'The frame''s seq, sensor, fan and system-health values, encoded compactly; read them through pankha.sensor_readings, pankha.fan_readings and pankha.health_readings.';
