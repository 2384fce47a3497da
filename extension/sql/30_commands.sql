-- Pankha extension: the durable command queue.
--
-- A command is queued by pankha.send_command() (which NOTIFYs pankha_command
-- on commit), handed to a bridge by pankha.claim_commands() (FOR UPDATE
-- SKIP LOCKED, so two bridges never deliver it at once) and marked sent
-- with a redelivery deadline; pankha.ack_command() records the agent's
-- result and NOTIFYs pankha_command_result.  A command not acknowledged by
-- its deadline is delivered again (at least once) until max_attempts, then
-- it is dead; one past expires_at is expired and never delivered again.
--
--   queued -> sent -> acked | failed
--   queued | sent  -> expired (expires_at passed, or superseded) | dead
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.commands (
    command_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id      text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    command_type  text NOT NULL CHECK (pankha.valid_id(command_type)),
    parameters    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parameters) = 'object'),
    priority      text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    priority_rank smallint GENERATED ALWAYS AS
                  (CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END) STORED,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sent', 'acked', 'failed', 'expired', 'dead')),
    status_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    sent_at       timestamptz,
    redeliver_at  timestamptz,
    acked_at      timestamptz,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    success       boolean,
    error         text,
    issued_by     text NOT NULL DEFAULT session_user,
    CHECK (expires_at > created_at),
    CHECK (status <> 'sent' OR redeliver_at IS NOT NULL)
);
CREATE INDEX commands_deliverable ON pankha.commands (agent_id, priority_rank, created_at)
    WHERE status IN ('queued', 'sent');
CREATE INDEX ON pankha.commands (agent_id, created_at);
COMMENT ON TABLE pankha.commands IS
'The command queue, one row per command, kept after completion as its history.  status_reason says why a command expired or died; success and error are what the agent reported (also for a late ack of an expired command).';
SELECT pg_catalog.pg_extension_config_dump('pankha.commands', '');

-- The maximum length kept of an error text reported by an agent.
CREATE FUNCTION pankha.max_error_length() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 2000;
COMMENT ON FUNCTION pankha.max_error_length() IS
'Error texts from agents are kept up to this many characters.';

-- Audits a command's new final state and tells the dashboards about it.
CREATE FUNCTION pankha.command_finished(command_id uuid, agent_id text, status text,
                                        details jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.audit('command.' || status, agent_id,
                         jsonb_build_object('command_id', command_id) || coalesce(details, '{}'));
    PERFORM pg_notify('pankha_command_result',
                      jsonb_build_object('agent_id', agent_id, 'command_id', command_id,
                                         'status', status)::text);
END
$$;
REVOKE ALL ON FUNCTION pankha.command_finished(uuid, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.command_finished(uuid, text, text, jsonb) IS
'Internal: audits a command result and NOTIFYs pankha_command_result with agent_id, command_id and status.';

-- Raises a clear error unless the agent is registered.
CREATE FUNCTION pankha.check_agent(agent_id text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.check_agent_id(agent_id);
    IF NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = check_agent.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_agent(text) IS
'Raises undefined_object (42704) unless the agent is registered.';

-- The fan of an agent, or a clear error naming both.
CREATE FUNCTION pankha.find_fan(agent_id text, fan_id jsonb) RETURNS pankha.fans
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
BEGIN
    IF fan_id IS NULL OR jsonb_typeof(fan_id) <> 'string' THEN
        RAISE EXCEPTION 'parameters.fan_id must be a string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO fan FROM pankha.fans f
    WHERE f.agent_id = find_fan.agent_id AND f.fan_id = find_fan.fan_id #>> '{}';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fan "%" of agent "%" does not exist', fan_id #>> '{}', agent_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Fans are known once the agent has reported them.';
    END IF;
    RETURN fan;
END
$$;
COMMENT ON FUNCTION pankha.find_fan(text, jsonb) IS
'The catalog row of an agent''s fan; raises undefined_object when the agent never reported it.';

-- Raises a clear error when an object has keys outside the allowed list.
CREATE FUNCTION pankha.check_keys(what text, obj jsonb, allowed text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    extra text;
BEGIN
    SELECT k INTO extra FROM jsonb_object_keys(obj) k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF extra IS NOT NULL THEN
        RAISE EXCEPTION '%.%: unknown field', what, extra
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN cardinality(allowed) = 0 THEN 'It takes no fields.'
                                ELSE format('The fields allowed are: %s.', array_to_string(allowed, ', ')) END;
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_keys(text, jsonb, text[]) IS
'Raises invalid_parameter_value naming the first key of obj that is not allowed.';

-- Validates the parameters of the command types agents know and returns
-- them as they are to be delivered; other types pass through unchanged.
CREATE FUNCTION pankha.check_command(agent_id text, command_type text, parameters jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    speed jsonb;
    limit_key text;
BEGIN
    IF parameters IS NULL OR jsonb_typeof(parameters) <> 'object' THEN
        RAISE EXCEPTION 'parameters must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s was given.', coalesce(jsonb_typeof(parameters), 'NULL'));
    END IF;
    IF octet_length(parameters::text) > 65536 THEN
        RAISE EXCEPTION 'parameters are too large'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('Command parameters may take 65536 bytes as JSON text; these take %s.',
                                  octet_length(parameters::text));
    END IF;
    -- A fan's floor and ceiling come from the catalog (pankha.set_fan_limits)
    -- and the agent's own configuration; a command may repeat the catalog's
    -- limits (the profile functions do) but never carry others (M1).
    IF command_type IN ('set_fan_speed', 'apply_profile', 'restore_auto', 'emergency_stop')
       AND parameters ?| ARRAY['min_speed', 'max_speed', 'emergency_temp', 'failsafe_speed'] THEN
        IF parameters ? 'fan_id' THEN
            fan := pankha.find_fan(agent_id, parameters -> 'fan_id');
        END IF;
        SELECT l.key INTO limit_key
          FROM (VALUES ('min_speed', fan.min_speed), ('max_speed', fan.max_speed),
                       ('emergency_temp', fan.emergency_temp), ('failsafe_speed', NULL)) AS l(key, catalog)
         WHERE parameters ? l.key
           AND (fan.fan_id IS NULL OR jsonb_typeof(parameters -> l.key) IS DISTINCT FROM 'number'
                OR (parameters ->> l.key)::numeric IS DISTINCT FROM l.catalog::numeric)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'parameters.% may not be given in %', limit_key, command_type
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A fan''s safety limits are taken from the catalog, where only pankha.set_fan_limits changes them.';
        END IF;
    END IF;
    CASE command_type
    WHEN 'set_fan_speed' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{fan_id,speed}');
        fan := pankha.find_fan(agent_id, parameters -> 'fan_id');
        speed := parameters -> 'speed';
        IF speed IS NULL OR jsonb_typeof(speed) <> 'number' THEN
            RAISE EXCEPTION 'parameters.speed must be a number' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF speed::numeric < fan.min_speed OR speed::numeric > fan.max_speed THEN
            RAISE EXCEPTION 'speed % is outside the limits of fan "%"', speed, fan.fan_id
                USING ERRCODE = 'numeric_value_out_of_range',
                      DETAIL = format('Fan %s of agent %s accepts speeds from %s to %s percent.',
                                      fan.fan_id, agent_id, fan.min_speed, fan.max_speed);
        END IF;
    WHEN 'emergency_stop' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{}');
    WHEN 'restore_auto' THEN
        PERFORM pankha.check_keys('parameters', parameters, '{fan_id}');
        IF parameters ? 'fan_id' THEN
            PERFORM pankha.find_fan(agent_id, parameters -> 'fan_id');
        END IF;
    WHEN 'update_settings' THEN
        PERFORM pankha.check_settings(parameters, 'parameters');
        PERFORM pankha.check_settings_safety(agent_id, parameters);
    WHEN 'apply_profile' THEN
        PERFORM pankha.check_keys('parameters', parameters,
                                  '{fan_id,sensor_id,profile,min_speed,max_speed}');
        IF jsonb_typeof(parameters -> 'profile') = 'object' THEN
            parameters := jsonb_set(parameters, '{profile}', parameters -> 'profile' -> 'name');
        END IF;
        -- The curve and limits are always taken from the catalog, so what
        -- the agent runs is what the catalog says.
        RETURN pankha.profile_parameters(agent_id, parameters -> 'fan_id',
                                         parameters -> 'profile', parameters -> 'sensor_id');
    ELSE
        NULL;
    END CASE;
    RETURN parameters;
END
$$;
COMMENT ON FUNCTION pankha.check_command(text, text, jsonb) IS
'Validates command parameters (set_fan_speed, emergency_stop, restore_auto, update_settings, apply_profile) and returns them as delivered.';

-- Supersedes the unfinished commands a new one makes pointless: an older
-- update_settings, or an older apply_profile / restore_auto of the same fan
-- when a new apply_profile or restore_auto for that fan comes.
CREATE FUNCTION pankha.supersede_commands(agent_id text, command_type text, parameters jsonb,
                                          by_command uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    old record;
BEGIN
    IF command_type NOT IN ('update_settings', 'apply_profile', 'restore_auto') THEN
        RETURN;
    END IF;
    -- One superseder per agent at a time: two would otherwise lock the same
    -- rows in different orders.
    PERFORM pg_advisory_xact_lock(hashtext('pankha.supersede'), hashtext(agent_id));
    FOR old IN
        UPDATE pankha.commands c
        SET status = 'expired', status_reason = format('superseded by %s', by_command)
        WHERE c.agent_id = supersede_commands.agent_id
          AND c.status IN ('queued', 'sent')
          AND c.command_id <> by_command
          AND CASE supersede_commands.command_type
              WHEN 'update_settings' THEN c.command_type = 'update_settings'
              ELSE c.command_type IN ('apply_profile', 'restore_auto')
                   AND c.parameters -> 'fan_id' = supersede_commands.parameters -> 'fan_id'
              END
        RETURNING c.command_id, c.status_reason
    LOOP
        PERFORM pankha.command_finished(old.command_id, agent_id, 'expired',
                                        jsonb_build_object('reason', old.status_reason));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.supersede_commands(text, text, jsonb, uuid) FROM PUBLIC;
COMMENT ON FUNCTION pankha.supersede_commands(text, text, jsonb, uuid) IS
'Internal: expires unfinished commands made obsolete by a new one (older update_settings; older apply_profile of the same fan).';

CREATE FUNCTION pankha.send_command(agent_id text, command_type text, parameters jsonb DEFAULT '{}',
                                    priority text DEFAULT 'normal', ttl interval DEFAULT '1 hour',
                                    ui_user text DEFAULT NULL, max_attempts integer DEFAULT 5)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    id uuid := gen_random_uuid();
    checked jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    IF command_type IS NULL OR NOT pankha.valid_id(command_type) THEN
        RAISE EXCEPTION 'invalid command_type'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A command_type is 1 to 64 bytes long without control characters.';
    END IF;
    IF priority IS NULL OR priority NOT IN ('high', 'normal', 'low') THEN
        RAISE EXCEPTION 'invalid priority "%"', priority
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'priority is one of high, normal, low.';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' OR ttl > interval '1 year' THEN
        RAISE EXCEPTION 'invalid ttl "%"', ttl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A command lives for a positive interval of at most 1 year.';
    END IF;
    IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'invalid max_attempts %', max_attempts
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max_attempts is between 1 and 100.';
    END IF;
    checked := pankha.check_command(agent_id, command_type, parameters);

    PERFORM pankha.supersede_commands(agent_id, command_type, checked, id);
    INSERT INTO pankha.commands (command_id, agent_id, command_type, parameters, priority,
                                 expires_at, max_attempts, issued_by)
    VALUES (id, agent_id, command_type, checked, priority, now() + ttl, max_attempts,
            coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user));
    PERFORM pankha.audit('command.issued', agent_id,
                         jsonb_build_object('command_id', id, 'command_type', command_type,
                                            'parameters', checked, 'priority', priority,
                                            'expires_at', now() + ttl));
    PERFORM pg_notify('pankha_command',
                      jsonb_build_object('agent_id', agent_id, 'command_id', id)::text);
    RETURN id;
END
$$;
REVOKE ALL ON FUNCTION pankha.send_command(text, text, jsonb, text, interval, text, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.send_command(text, text, jsonb, text, interval, text, integer) IS
'Validates and queues a command for an agent and returns its id; bridges hear of it through NOTIFY pankha_command on commit.  ui_user names the dashboard user it is sent for.';

CREATE FUNCTION pankha.claim_commands(agent_ids text[], visibility interval DEFAULT '30 seconds',
                                      max_commands integer DEFAULT 100)
RETURNS TABLE (command_id uuid, agent_id text, command_type text, parameters jsonb,
               priority text, attempts integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    c pankha.commands;
    delivered integer := 0;
    skipped integer;
    sent_time timestamptz;
BEGIN
    IF visibility IS NULL OR visibility <= interval '0' OR visibility > interval '1 day' THEN
        RAISE EXCEPTION 'invalid visibility "%"', visibility
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The redelivery deadline is a positive interval of at most 1 day.';
    END IF;
    IF max_commands IS NULL OR max_commands NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'invalid max_commands %', max_commands
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max_commands is between 1 and 10000.';
    END IF;
    -- Deadlines and expiry are judged by the clock, not by the start of the
    -- caller's transaction, which may be older than the call.
    --
    -- Each round locks at most as many rows as are still wanted.  Rows that
    -- turn out expired or dead are retired and the round repeats, so they
    -- never take the place of a deliverable command.
    LOOP
        skipped := 0;
        FOR c IN
            SELECT * FROM pankha.commands q
            WHERE q.agent_id = ANY (agent_ids)
              AND (q.status = 'queued' OR (q.status = 'sent' AND q.redeliver_at <= clock_timestamp()))
            ORDER BY q.priority_rank, q.created_at, q.command_id
            LIMIT max_commands - delivered
            FOR UPDATE SKIP LOCKED
        LOOP
            IF c.expires_at <= clock_timestamp() THEN
                UPDATE pankha.commands q SET status = 'expired', status_reason = 'expired before acknowledgement'
                WHERE q.command_id = c.command_id;
                PERFORM pankha.command_finished(c.command_id, c.agent_id, 'expired',
                                                jsonb_build_object('attempts', c.attempts));
                skipped := skipped + 1;
            ELSIF c.attempts >= c.max_attempts THEN
                UPDATE pankha.commands q SET status = 'dead',
                    status_reason = format('no acknowledgement after %s deliveries', c.attempts)
                WHERE q.command_id = c.command_id;
                PERFORM pankha.command_finished(c.command_id, c.agent_id, 'dead',
                                                jsonb_build_object('attempts', c.attempts));
                skipped := skipped + 1;
            ELSE
                sent_time := clock_timestamp();
                UPDATE pankha.commands q
                SET status = 'sent', attempts = q.attempts + 1, sent_at = sent_time,
                    redeliver_at = sent_time + visibility
                WHERE q.command_id = c.command_id;
                delivered := delivered + 1;
                command_id := c.command_id;
                agent_id := c.agent_id;
                command_type := c.command_type;
                parameters := c.parameters;
                priority := c.priority;
                attempts := c.attempts + 1;
                RETURN NEXT;
            END IF;
        END LOOP;
        EXIT WHEN skipped = 0 OR delivered >= max_commands;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.claim_commands(text[], interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.claim_commands(text[], interval, integer) IS
'For a bridge: the deliverable commands of the given agents, highest priority then oldest, marked sent with a redelivery deadline of now + visibility.  Rows locked by another claimer are skipped; expired and over-tried commands are retired, never returned.';

CREATE FUNCTION pankha.pending_commands(agent_id text, visibility interval DEFAULT '30 seconds',
                                        max_commands integer DEFAULT 100)
RETURNS TABLE (command_id uuid, agent_id text, command_type text, parameters jsonb,
               priority text, attempts integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
SELECT * FROM pankha.claim_commands(ARRAY[agent_id], visibility, max_commands)
$$;
REVOKE ALL ON FUNCTION pankha.pending_commands(text, interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.pending_commands(text, interval, integer) IS
'For the HTTP sync fallback: claims the deliverable commands of one agent, like pankha.claim_commands().';

CREATE FUNCTION pankha.ack_command(agent_id text, command_id uuid, success boolean,
                                   error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    c pankha.commands;
    new_status text;
    kept_error text := left(error, pankha.max_error_length());
BEGIN
    IF success IS NULL THEN
        RAISE EXCEPTION 'success must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF command_id IS NULL THEN
        RAISE EXCEPTION 'command_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO c FROM pankha.commands q WHERE q.command_id = ack_command.command_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % does not exist', command_id USING ERRCODE = 'undefined_object';
    END IF;
    IF agent_id IS DISTINCT FROM c.agent_id THEN
        RAISE EXCEPTION 'command % belongs to another agent', command_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'An agent can only acknowledge its own commands.';
    END IF;
    -- A repeated ack (e.g. after a redelivery) changes nothing.
    IF c.acked_at IS NOT NULL THEN
        RETURN c.status;
    END IF;

    IF c.status IN ('queued', 'sent') THEN
        new_status := CASE WHEN success THEN 'acked' ELSE 'failed' END;
    ELSE
        -- Late: recorded, but an expired or dead command stays so.
        new_status := c.status;
    END IF;
    UPDATE pankha.commands q
    SET status = new_status, acked_at = now(), success = ack_command.success, error = kept_error
    WHERE q.command_id = c.command_id;
    PERFORM pankha.command_finished(c.command_id, c.agent_id, new_status,
                                    jsonb_build_object('success', success, 'error', kept_error,
                                                       'late', CASE WHEN new_status IN ('expired', 'dead') THEN true END));
    RETURN new_status;
END
$$;
REVOKE ALL ON FUNCTION pankha.ack_command(text, uuid, boolean, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.ack_command(text, uuid, boolean, text) IS
'Records an agent''s result for its command and returns the command''s status (acked, failed, or expired/dead for a late ack, which does not resurrect it).  Idempotent; NOTIFYs pankha_command_result.';

-- The background worker's pass over the queue: retires what can no longer
-- be delivered, without waiting for rows a claimer holds.
CREATE FUNCTION pankha.expire_commands() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    FOR c IN
        SELECT q.command_id, q.agent_id, q.attempts,
               CASE WHEN q.expires_at <= now() THEN 'expired' ELSE 'dead' END AS new_status
        FROM pankha.commands q
        WHERE q.status IN ('queued', 'sent')
          AND (q.expires_at <= now()
               OR (q.status = 'sent' AND q.redeliver_at <= now() AND q.attempts >= q.max_attempts))
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE pankha.commands q
        SET status = c.new_status,
            status_reason = CASE c.new_status WHEN 'expired' THEN 'expired before acknowledgement'
                            ELSE format('no acknowledgement after %s deliveries', c.attempts) END
        WHERE q.command_id = c.command_id;
        PERFORM pankha.command_finished(c.command_id, c.agent_id, c.new_status,
                                        jsonb_build_object('attempts', c.attempts));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.expire_commands() FROM PUBLIC;
COMMENT ON FUNCTION pankha.expire_commands() IS
'Marks expired the unfinished commands past expires_at and dead those out of attempts; returns how many.  Called by the background worker.';

-- Finished commands are history; the audit log keeps their story after
-- they are gone from here.
CREATE FUNCTION pankha.prune_commands(keep interval DEFAULT '30 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF keep IS NULL OR keep < interval '0' THEN
        RAISE EXCEPTION 'invalid keep "%"', keep
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'keep is how long finished commands stay, a non-negative interval.';
    END IF;
    DELETE FROM pankha.commands c
    WHERE c.status IN ('acked', 'failed', 'expired', 'dead') AND c.created_at < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_commands(interval) FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_commands(interval) IS
'Deletes finished (acked, failed, expired, dead) commands created more than keep ago; returns how many.  Unfinished commands are never deleted.';

GRANT EXECUTE ON FUNCTION pankha.claim_commands(text[], interval, integer),
                          pankha.pending_commands(text, interval, integer),
                          pankha.ack_command(text, uuid, boolean, text),
                          pankha.send_command(text, text, jsonb, text, interval, text, integer)
    TO pankha_bridge;
GRANT SELECT ON pankha.commands TO pankha_reader;

-- Privileges (issue 13): the checks are helpers of send_command.
REVOKE ALL ON FUNCTION pankha.check_agent(text),
                       pankha.check_command(text, text, jsonb),
                       pankha.check_keys(text, jsonb, text[]),
                       pankha.find_fan(text, jsonb)
    FROM PUBLIC;
