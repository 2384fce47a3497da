-- Pankha extension: what the bridges record about agent connections.
-- A bridge keeps no state of its own; every connect and disconnect lands
-- here, so operators can see reconnect storms and connection durations in
-- SQL, and bridges learn from NOTIFY when a connection moved elsewhere.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.connections (
    connection_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      text NOT NULL,
    bridge_id     text NOT NULL,
    remote_addr   text,
    connected_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at     timestamptz,
    close_code    integer,
    close_reason  text,
    frames_in     bigint NOT NULL DEFAULT 0 CHECK (frames_in >= 0),
    bytes_in      bigint NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    frames_out    bigint NOT NULL DEFAULT 0 CHECK (frames_out >= 0),
    bytes_out     bigint NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    CHECK (closed_at IS NULL OR closed_at >= connected_at)
);
-- Connection history and the agents' latest reports are the database's
-- own data, so pg_dump keeps them (extension tables it is not told about
-- are left out of a dump).
SELECT pg_catalog.pg_extension_config_dump('pankha.connections', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.connections', 'connection_id'), '');
CREATE INDEX connections_agent_idx ON pankha.connections (agent_id, connected_at);
CREATE INDEX connections_open_idx ON pankha.connections (agent_id) WHERE closed_at IS NULL;
COMMENT ON TABLE pankha.connections IS
'One row per WebSocket connection of an agent to a bridge: who, where from, when it opened and closed, why it closed, and how much it carried.  Rows with closed_at NULL are open.';

-- The latest status report of each agent (the "status" message).
CREATE TABLE pankha.agent_reports (
    agent_id    text PRIMARY KEY REFERENCES pankha.agents ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    report      jsonb NOT NULL CHECK (jsonb_typeof(report) = 'object')
);
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_reports', '');
COMMENT ON TABLE pankha.agent_reports IS
'The most recent status message of each agent (uptime, memory and whatever else the agent reports).';

-- connection_opened: record a new connection, mark the agent online and
-- tell other bridges (channel pankha_agent) to close any older connection
-- of the same agent.  Returns the connection id; ids grow, so a bridge can
-- tell which of two connections is the newer.
CREATE FUNCTION pankha.connection_opened(agent_id text, bridge_id text, remote_addr text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id     bigint;
    was_online boolean;
BEGIN
    IF agent_id IS NULL OR NOT pankha.valid_id(agent_id) THEN
        RAISE EXCEPTION 'agent_id must be 1 to 64 bytes without control characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF bridge_id IS NULL OR bridge_id = '' THEN
        RAISE EXCEPTION 'bridge_id must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- NO KEY UPDATE: the UPDATE below takes no stronger lock, and one that
    -- conflicts with the KEY SHARE locks of ingest's foreign keys (new
    -- sensors, fans) deadlocked a batch of connections_opened against an
    -- ingest batch holding those locks
    SELECT a.status = 'online' INTO was_online
      FROM pankha.agents a
     WHERE a.agent_id = connection_opened.agent_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id
            USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE pankha.agents a SET status = 'online', last_seen = now()
     WHERE a.agent_id = connection_opened.agent_id;

    INSERT INTO pankha.connections (agent_id, bridge_id, remote_addr)
    VALUES (agent_id, bridge_id, remote_addr)
    RETURNING connection_id INTO new_id;

    IF EXISTS (SELECT 1 FROM pankha.connections c
                WHERE c.agent_id = connection_opened.agent_id
                  AND c.closed_at IS NULL AND c.connection_id < new_id) THEN
        PERFORM pg_notify('pankha_agent',
            json_build_object('agent_id', agent_id, 'event', 'replaced',
                              'bridge', bridge_id, 'connection', new_id)::text);
    END IF;
    IF NOT was_online THEN
        PERFORM pg_notify('pankha_agent_status',
            json_build_object('agent_id', agent_id, 'status', 'online')::text);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pankha.connection_opened(text, text, text) IS
'Records that an agent connected to a bridge, marks it online (NOTIFY pankha_agent_status) and, when it already had an open connection, asks every bridge to close the older one (NOTIFY pankha_agent, event "replaced").  Returns the new connection id.';

-- connection_closed: record the end of a connection; the agent goes
-- offline unless another connection of it is still open.
CREATE FUNCTION pankha.connection_closed(connection_id bigint, close_code integer, close_reason text,
                                         frames_in bigint DEFAULT 0, bytes_in bigint DEFAULT 0,
                                         frames_out bigint DEFAULT 0, bytes_out bigint DEFAULT 0)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    agent text;
BEGIN
    IF close_code IS NOT NULL AND (close_code < 1000 OR close_code > 4999) THEN
        RAISE EXCEPTION 'close_code % is not a WebSocket close code', close_code
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Close codes are between 1000 and 4999.';
    END IF;
    UPDATE pankha.connections c
       SET closed_at = clock_timestamp(), close_code = connection_closed.close_code,
           close_reason = left(connection_closed.close_reason, 123),
           frames_in = greatest(coalesce(connection_closed.frames_in, 0), 0),
           bytes_in = greatest(coalesce(connection_closed.bytes_in, 0), 0),
           frames_out = greatest(coalesce(connection_closed.frames_out, 0), 0),
           bytes_out = greatest(coalesce(connection_closed.bytes_out, 0), 0)
     WHERE c.connection_id = connection_closed.connection_id AND c.closed_at IS NULL
    RETURNING c.agent_id INTO agent;
    IF NOT FOUND THEN
        RETURN false;           -- unknown or already closed: nothing to do
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pankha.connections c
                    WHERE c.agent_id = agent AND c.closed_at IS NULL) THEN
        UPDATE pankha.agents a SET status = 'offline', last_seen = now()
         WHERE a.agent_id = agent AND a.status = 'online';
        IF FOUND THEN
            PERFORM pg_notify('pankha_agent_status',
                json_build_object('agent_id', agent, 'status', 'offline')::text);
        END IF;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint) IS
'Records that a connection ended (close code, reason, traffic).  The agent goes offline (NOTIFY pankha_agent_status) when it has no other open connection.  Returns false when the connection was unknown or already closed.';

-- bridge_started: a bridge that starts again under the same id closes the
-- rows its previous run left open (it crashed or was killed).
CREATE FUNCTION pankha.bridge_started(bridge_id text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stale bigint;
    n     integer := 0;
BEGIN
    FOR stale IN SELECT c.connection_id FROM pankha.connections c
                  WHERE c.bridge_id = bridge_started.bridge_id AND c.closed_at IS NULL
    LOOP
        PERFORM pankha.connection_closed(stale, 1006, 'bridge restarted');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.bridge_started(text) IS
'Closes the connections a previous run of this bridge left open (code 1006); returns how many.';

-- status_dropped: a status report's dropped_frames as a count; anything
-- but a non-negative number within bigint (absent, text, 1e400) is 0.
CREATE FUNCTION pankha.status_dropped(report jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(report -> 'dropped_frames') IS DISTINCT FROM 'number' THEN 0
                WHEN (report ->> 'dropped_frames')::numeric BETWEEN 0 AND 9007199254740991
                THEN floor((report ->> 'dropped_frames')::numeric)::bigint ELSE 0 END
$$;
REVOKE ALL ON FUNCTION pankha.status_dropped(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.status_dropped(jsonb) IS
'The dropped_frames count of an agent status report (0 when absent or not a non-negative number).';

-- record_status: keep an agent's latest "status" message, and say how many
-- frames it has dropped from its full resend buffer since its previous one
-- (the bridge's /metrics counts them, so a drop is never silent).
CREATE FUNCTION pankha.record_status(agent_id text, report jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before bigint;
    now_dropped bigint;
BEGIN
    IF report IS NULL OR jsonb_typeof(report) <> 'object' THEN
        RAISE EXCEPTION 'status data must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    now_dropped := pankha.status_dropped(report);
    SELECT pankha.status_dropped(r.report) INTO before
      FROM pankha.agent_reports r WHERE r.agent_id = record_status.agent_id FOR UPDATE;
    INSERT INTO pankha.agent_reports AS r (agent_id, received_at, report)
    VALUES (agent_id, now(), report)
    ON CONFLICT ON CONSTRAINT agent_reports_pkey
    DO UPDATE SET received_at = excluded.received_at, report = excluded.report;
    -- a count lower than before: the agent started afresh, all of it is new
    RETURN CASE WHEN now_dropped >= coalesce(before, 0) THEN now_dropped - coalesce(before, 0)
                ELSE now_dropped END;
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'agent "%" is not registered', agent_id
        USING ERRCODE = 'no_data_found';
END
$$;
COMMENT ON FUNCTION pankha.record_status(text, jsonb) IS
'Stores the latest status message an agent sent (replacing the previous one); returns how many more frames its dropped_frames counts than the previous report did (all of them after a restart of the agent lowered it).';

CREATE VIEW pankha.connection_stats AS
SELECT agent_id,
       count(*) AS connections,
       count(*) FILTER (WHERE connected_at > now() - interval '1 hour') AS connects_last_hour,
       count(*) FILTER (WHERE closed_at IS NULL) AS open_connections,
       avg(coalesce(closed_at, now()) - connected_at) AS average_duration,
       max(connected_at) AS last_connected_at
  FROM pankha.connections
 GROUP BY agent_id;
COMMENT ON VIEW pankha.connection_stats IS
'Per agent: how many connections it made (in all and in the last hour), how many are open, and how long they last on average.';

-- agent_sync: the HTTP fallback for agents that cannot hold a WebSocket.
-- One transaction: authenticate, store the frames, record the command
-- acks, and hand back the commands waiting and the effective settings.
-- Bad credentials return NULL (not an error) so the audit entry stays.
CREATE FUNCTION pankha.agent_sync(agent_id text, token text, client_addr text,
                                  frames jsonb, acks jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    results  jsonb;
    commands jsonb;
    ack      jsonb;
    n        integer;
BEGIN
    IF pankha.authenticate_agent(agent_id, token, client_addr) IS DISTINCT FROM agent_id THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(frames) IS DISTINCT FROM 'array' OR jsonb_typeof(acks) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'frames and acks must be JSON arrays'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    n := jsonb_array_length(frames);
    IF n > 0 THEN
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'stored', r.stored, 'sqlstate', r.sqlstate, 'error', r.message)) ORDER BY r.ord)
          INTO results
          FROM pankha.ingest_many(array_fill(agent_id, ARRAY[n]),
                                  ARRAY(SELECT f FROM jsonb_array_elements(frames) WITH ORDINALITY AS e(f, i)
                                        ORDER BY i)) r;
    END IF;
    FOR ack IN SELECT a FROM jsonb_array_elements(acks) AS e(a)
    LOOP
        IF jsonb_typeof(ack) IS DISTINCT FROM 'object' OR jsonb_typeof(ack->'command_id') IS DISTINCT FROM 'string'
           OR jsonb_typeof(ack->'success') IS DISTINCT FROM 'boolean' THEN
            RAISE EXCEPTION 'each ack needs a string command_id and a boolean success'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM pankha.ack_command(agent_id, (ack->>'command_id')::uuid, (ack->>'success')::boolean,
                                   ack->>'error');
    END LOOP;
    SELECT coalesce(jsonb_agg(jsonb_build_object('command_id', c.command_id,
                                                 'command_type', c.command_type,
                                                 'parameters', c.parameters,
                                                 'priority', c.priority)), '[]')
      INTO commands
      FROM pankha.pending_commands(agent_id) c;
    RETURN jsonb_build_object('frames', coalesce(results, '[]'), 'commands', commands,
                              'config', pankha.effective_settings(agent_id));
END
$$;
COMMENT ON FUNCTION pankha.agent_sync(text, text, text, jsonb, jsonb) IS
'The HTTP sync fallback in one call: authenticates the agent (NULL when refused, audited), stores its frames (one outcome each), records its command acks, and returns the commands waiting for it and its effective settings.';

-- agent_group: the group an agent belongs to (NULL when none), for the
-- dashboards' groups.<name> topics.
CREATE FUNCTION pankha.agent_group(agent_id text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT m.group_name FROM pankha.agent_group_members m
             WHERE m.agent_id = agent_group.agent_id);
END
$$;
COMMENT ON FUNCTION pankha.agent_group(text) IS
'The group of an agent, or NULL when it is in none.';

-- Privileges (issue 13).  A bridge connects as a login role that holds only
-- pankha_bridge, and that role has no privilege on the tables these write:
-- they run as their owner, like every other SECURITY DEFINER function (with
-- search_path pinned as before, pg_temp last), and only the bridge may
-- call them.
REVOKE ALL ON FUNCTION pankha.connection_opened(text, text, text),
                       pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint),
                       pankha.bridge_started(text),
                       pankha.record_status(text, jsonb),
                       pankha.agent_sync(text, text, text, jsonb, jsonb),
                       pankha.agent_group(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.connection_opened(text, text, text),
                          pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint),
                          pankha.bridge_started(text),
                          pankha.record_status(text, jsonb),
                          pankha.agent_sync(text, text, text, jsonb, jsonb),
                          pankha.agent_group(text)
    TO pankha_bridge;

-- connections_opened: connection_opened for many connections of one bridge
-- in one transaction (a connect ramp records thousands a second: one
-- commit each was the bridge's bottleneck), each with the agent's group and
-- effective settings.  An id that is invalid or not registered gets its
-- SQLSTATE and message and costs the others nothing; any other error fails
-- the call, and the bridge records those connections one by one.
CREATE FUNCTION pankha.connections_opened(agent_ids text[], bridge_id text, remote_addrs text[])
RETURNS TABLE (ord integer, connection_id bigint, group_name text, settings jsonb,
               sqlstate text, message text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := coalesce(cardinality(agent_ids), 0);
BEGIN
    IF n > 10000 THEN
        RAISE EXCEPTION 'agent_ids holds % ids; at most 10000 a call', n
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF remote_addrs IS NOT NULL AND cardinality(remote_addrs) <> n THEN
        RAISE EXCEPTION 'remote_addrs must have one address (or NULL) for each of the % agent_ids', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. n LOOP
        ord := i;
        connection_id := NULL; group_name := NULL; settings := NULL;
        sqlstate := NULL; message := NULL;
        IF agent_ids[i] IS NULL OR NOT pankha.valid_id(agent_ids[i]) THEN
            sqlstate := '22023';
            message := 'agent_id must be 1 to 64 bytes without control characters';
        ELSIF NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = agent_ids[i]) THEN
            sqlstate := '02000';
            message := format('agent "%s" is not registered', agent_ids[i]);
        ELSE
            connection_id := pankha.connection_opened(agent_ids[i], bridge_id, remote_addrs[i]);
            group_name := pankha.agent_group(agent_ids[i]);
            settings := pankha.effective_settings(agent_ids[i]);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.connections_opened(text[], text, text[]) IS
'connection_opened for each of agent_ids (one transaction), returning per connection (ord from 1) its id, the agent''s group and effective settings, or the SQLSTATE and message of an id that is invalid or not registered.';

-- connections_closed: connection_closed for many connections in one
-- transaction; returns how many were open.
CREATE FUNCTION pankha.connections_closed(connection_ids bigint[], close_codes integer[], close_reasons text[],
                                          frames_in bigint[], bytes_in bigint[],
                                          frames_out bigint[], bytes_out bigint[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := coalesce(cardinality(connection_ids), 0);
    closed integer := 0;
BEGIN
    IF n > 10000 THEN
        RAISE EXCEPTION 'connection_ids holds % ids; at most 10000 a call', n
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF coalesce(cardinality(close_codes), 0) <> n OR coalesce(cardinality(close_reasons), 0) <> n
       OR coalesce(cardinality(frames_in), 0) <> n OR coalesce(cardinality(bytes_in), 0) <> n
       OR coalesce(cardinality(frames_out), 0) <> n OR coalesce(cardinality(bytes_out), 0) <> n THEN
        RAISE EXCEPTION 'close_codes, close_reasons, frames_in, bytes_in, frames_out and bytes_out must each have one element for each of the % connection_ids', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. n LOOP
        IF pankha.connection_closed(connection_ids[i], close_codes[i], close_reasons[i],
                                    frames_in[i], bytes_in[i], frames_out[i], bytes_out[i]) THEN
            closed := closed + 1;
        END IF;
    END LOOP;
    RETURN closed;
END
$$;
COMMENT ON FUNCTION pankha.connections_closed(bigint[], integer[], text[], bigint[], bigint[], bigint[], bigint[]) IS
'connection_closed for each element of the arrays (one transaction; a bridge closing many connections at once).  Returns how many of the connections were open.';

REVOKE ALL ON FUNCTION pankha.connections_opened(text[], text, text[]),
                       pankha.connections_closed(bigint[], integer[], text[], bigint[], bigint[], bigint[], bigint[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.connections_opened(text[], text, text[]),
                          pankha.connections_closed(bigint[], integer[], text[], bigint[], bigint[], bigint[], bigint[])
    TO pankha_bridge;
