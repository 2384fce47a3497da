-- Pankha extension: what the worker watches on each pass — agents going
-- silent and coming back, commands past their deadlines, and alert rules.
--
-- Agent status changes NOTIFY pankha_agent_status {"agent_id","status"};
-- command outcomes NOTIFY pankha_command_result {"agent_id","command_id",
-- "status"} (redelivered commands wake the bridges on pankha_command);
-- alerts NOTIFY pankha_alert with the alert as JSON.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- ---------------------------------------------------------------------
-- Liveness
-- ---------------------------------------------------------------------

-- An agent's update interval in seconds (3 until settings say otherwise).
CREATE FUNCTION pankha.update_interval(agent_id text) RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN coalesce((pankha.effective_settings(agent_id) ->> 'update_interval')::double precision, 3);
COMMENT ON FUNCTION pankha.update_interval(text) IS
'Seconds between two frames of the agent: its effective update_interval setting (3 by default).';

-- How long an agent may be silent before it counts as offline.
CREATE FUNCTION pankha.offline_threshold(agent_id text) RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fixed interval := pankha.setting_interval('pankha.offline_after', '0');
BEGIN
    IF fixed > interval '0' THEN
        RETURN fixed;
    END IF;
    RETURN greatest(interval '15 seconds', 3 * pankha.update_interval(agent_id) * interval '1 second');
END
$$;
COMMENT ON FUNCTION pankha.offline_threshold(text) IS
'How long the agent may stay silent before the worker marks it offline: pankha.offline_after when set, else three of its update intervals and at least 15 seconds.';

-- Persist liveness and move agents between online and offline.
CREATE FUNCTION pankha.update_agent_status(OUT agent_id text, OUT status text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fixed interval := pankha.setting_interval('pankha.offline_after', '0');
    shortest interval := CASE WHEN fixed > interval '0' THEN fixed ELSE interval '15 seconds' END;
    heard timestamptz := pankha.beats_heard_since();
BEGIN
    -- Back online: a frame arrived after the time the agent was last known
    -- (compared before that time is overwritten by the flush below).
    FOR agent_id, status IN
        UPDATE pankha.agents g SET status = 'online'
        FROM pankha.agent_liveness() l
        WHERE g.agent_id = l.agent_id AND g.status = 'offline'
          AND l.last_seen > coalesce(g.last_seen, '-infinity')
          AND l.last_seen > now() - pankha.offline_threshold(g.agent_id)
        RETURNING g.agent_id, g.status
    LOOP
        PERFORM pg_notify('pankha_agent_status',
                          jsonb_build_object('agent_id', agent_id, 'status', status)::text);
        RETURN NEXT;
    END LOOP;

    PERFORM pankha.flush_liveness();

    -- Silence is only counted from when this server could hear the agent:
    -- after a restart or a promotion (liveness in shared memory starts
    -- empty, last_seen is as old as the last flush) every agent has its
    -- whole threshold again, so a failover is no storm of offline events.
    FOR agent_id, status IN
        UPDATE pankha.agents g SET status = 'offline'
        WHERE g.status = 'online'
          AND greatest(coalesce(g.last_seen, g.registered_at), heard) < now() - shortest
          AND greatest(coalesce(g.last_seen, g.registered_at), heard) < now() - pankha.offline_threshold(g.agent_id)
        RETURNING g.agent_id, g.status
    LOOP
        PERFORM pg_notify('pankha_agent_status',
                          jsonb_build_object('agent_id', agent_id, 'status', status)::text);
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.update_agent_status() FROM PUBLIC;
COMMENT ON FUNCTION pankha.update_agent_status() IS
'Persist liveness from shared memory, mark online the offline agents that sent a frame since, and offline the online ones silent past pankha.offline_threshold() (silence counted from the start or promotion of the server at the earliest); NOTIFYs pankha_agent_status for each and returns the changes.  The worker calls it.';

-- ---------------------------------------------------------------------
-- Commands
-- ---------------------------------------------------------------------

-- Expire and bury what can no longer be delivered, and put commands whose
-- redelivery deadline passed unacknowledged back in the queue, waking the
-- bridges so they deliver them again.
CREATE FUNCTION pankha.requeue_commands() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    n := pankha.expire_commands();
    FOR c IN
        UPDATE pankha.commands q SET status = 'queued', redeliver_at = NULL
        WHERE q.command_id IN (SELECT s.command_id FROM pankha.commands s
                               WHERE s.status = 'sent' AND s.redeliver_at <= now()
                                 AND s.attempts < s.max_attempts AND s.expires_at > now()
                               FOR UPDATE SKIP LOCKED)
        RETURNING q.agent_id, q.command_id
    LOOP
        PERFORM pg_notify('pankha_command',
                          jsonb_build_object('agent_id', c.agent_id, 'command_id', c.command_id)::text);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.requeue_commands() FROM PUBLIC;
COMMENT ON FUNCTION pankha.requeue_commands() IS
'Expire commands past expires_at and mark dead those out of attempts (NOTIFY pankha_command_result each), then return unacknowledged commands past their redelivery deadline to the queue (NOTIFY pankha_command).  Returns how many changed.  The worker calls it.';

-- ---------------------------------------------------------------------
-- Alerts
-- ---------------------------------------------------------------------

CREATE TABLE pankha.alert_rules (
    rule_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (pankha.valid_id(name)),
    enabled     boolean NOT NULL DEFAULT true,
    agent_id    text REFERENCES pankha.agents ON DELETE CASCADE,
    agent_group text REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    sensor_type text,
    target_id   text,
    condition   text NOT NULL CONSTRAINT alert_rules_condition_known CHECK (condition IN
                ('temperature_above', 'temperature_below', 'fan_rpm_below', 'fan_rpm_above', 'agent_offline')),
    threshold   real CONSTRAINT alert_rules_threshold_needed
                CHECK ((condition = 'agent_offline') = (threshold IS NULL)),
    duration    interval NOT NULL DEFAULT '0' CONSTRAINT alert_rules_duration_positive
                CHECK (duration >= interval '0'),
    cooldown    interval NOT NULL DEFAULT '5 minutes' CONSTRAINT alert_rules_cooldown_positive
                CHECK (cooldown >= interval '0'),
    severity    text NOT NULL DEFAULT 'warning' CONSTRAINT alert_rules_severity_known
                CHECK (severity IN ('info', 'warning', 'critical')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_sensor_type_for_temperatures
        CHECK (sensor_type IS NULL OR condition LIKE 'temperature_%'),
    CONSTRAINT alert_rules_target_for_readings
        CHECK (target_id IS NULL OR condition <> 'agent_offline')
);
COMMENT ON TABLE pankha.alert_rules IS
'Alert rules: a selector (agent_id, agent_group, sensor_type and target_id, a sensor or fan id; NULL matches all; a rule goes with its agent or group), a condition with its threshold (degrees Celsius or rpm), how long it must hold (duration), how long after resolving the same series may not fire again (cooldown), and a severity.  Add them with pankha.add_alert_rule().';
SELECT pg_catalog.pg_extension_config_dump('pankha.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.alert_rules', 'rule_id'), '');

CREATE TABLE pankha.alerts (
    alert_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id        bigint REFERENCES pankha.alert_rules ON DELETE SET NULL,
    rule_name      text NOT NULL,
    agent_id       text NOT NULL,
    target_id      text,
    condition      text NOT NULL,
    threshold      real,
    severity       text NOT NULL,
    state          text NOT NULL CHECK (state IN ('firing', 'resolved')),
    value          real,
    fired_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolved_value real,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX ON pankha.alerts (fired_at);
CREATE INDEX ON pankha.alerts (agent_id, fired_at);
CREATE INDEX ON pankha.alerts (state) WHERE state = 'firing';
COMMENT ON TABLE pankha.alerts IS
'Every alert that fired: which rule, agent and sensor or fan (target_id), the value that fired it, and when it resolved with which value.';
SELECT pg_catalog.pg_extension_config_dump('pankha.alerts', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.alerts', 'alert_id'), '');

-- Where each (rule, agent, series) stands between passes.
CREATE TABLE pankha.alert_state (
    rule_id          bigint NOT NULL REFERENCES pankha.alert_rules ON DELETE CASCADE,
    agent_id         text NOT NULL REFERENCES pankha.agents ON DELETE CASCADE,
    target_id        text NOT NULL,
    pending_since    timestamptz,
    alert_id         bigint REFERENCES pankha.alerts ON DELETE SET NULL,
    last_resolved_at timestamptz,
    PRIMARY KEY (rule_id, agent_id, target_id)
);
COMMENT ON TABLE pankha.alert_state IS
'Internal: per rule, agent and series (target_id is '''' for agent rules): since when the condition holds, the open alert, and when the last one resolved (for the cooldown).';
SELECT pg_catalog.pg_extension_config_dump('pankha.alert_state', '');

-- Whether an agent belongs to a group (pankha.agent_group_members).
CREATE FUNCTION pankha.agent_in_group(agent_id text, group_name text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pankha.agent_group_members m
                   WHERE m.agent_id = agent_in_group.agent_id AND m.group_name = agent_in_group.group_name);
END
$$;
COMMENT ON FUNCTION pankha.agent_in_group(text, text) IS
'True when the agent is a member of the group.';

-- Raises a clear error naming the first argument of an alert rule that is
-- not valid; shared by pankha.add_alert_rule() and the API's rule changes.
CREATE FUNCTION pankha.check_alert_rule(name text, condition text, threshold real,
    duration interval, cooldown interval, severity text, agent_id text, agent_group text,
    sensor_type text, target_id text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF name IS NULL OR NOT pankha.valid_id(name) THEN
        RAISE EXCEPTION 'invalid alert rule name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'name is 1 to 64 bytes long without control characters.';
    END IF;
    IF condition IS NULL OR condition NOT IN ('temperature_above', 'temperature_below',
                                              'fan_rpm_below', 'fan_rpm_above', 'agent_offline') THEN
        RAISE EXCEPTION 'invalid condition "%"', condition
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'condition is one of temperature_above, temperature_below, fan_rpm_below, fan_rpm_above, agent_offline.';
    END IF;
    IF condition = 'agent_offline' AND threshold IS NOT NULL THEN
        RAISE EXCEPTION 'threshold must be null for condition agent_offline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF condition <> 'agent_offline' AND (threshold IS NULL OR threshold = 'NaN'
                                         OR threshold IN ('Infinity', '-Infinity')) THEN
        RAISE EXCEPTION 'threshold must be a finite number for condition %', condition
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Temperatures are in degrees Celsius, fan speeds in rpm.';
    END IF;
    IF duration IS NULL OR duration < interval '0' THEN
        RAISE EXCEPTION 'invalid duration "%"', duration
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'duration is an interval of zero or more.';
    END IF;
    IF cooldown IS NULL OR cooldown < interval '0' THEN
        RAISE EXCEPTION 'invalid cooldown "%"', cooldown
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'cooldown is an interval of zero or more.';
    END IF;
    IF severity IS NULL OR severity NOT IN ('info', 'warning', 'critical') THEN
        RAISE EXCEPTION 'invalid severity "%"', severity
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'severity is one of info, warning, critical.';
    END IF;
    IF agent_id IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = check_alert_rule.agent_id) THEN
        RAISE EXCEPTION 'agent "%" is not registered', agent_id USING ERRCODE = 'undefined_object';
    END IF;
    IF agent_group IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = check_alert_rule.agent_group) THEN
        RAISE EXCEPTION 'group "%" does not exist', agent_group USING ERRCODE = 'undefined_object';
    END IF;
    IF sensor_type IS NOT NULL AND condition NOT LIKE 'temperature_%' THEN
        RAISE EXCEPTION 'sensor_type applies only to temperature conditions'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target_id IS NOT NULL AND condition = 'agent_offline' THEN
        RAISE EXCEPTION 'target_id does not apply to condition agent_offline'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pankha.check_alert_rule(text, text, real, interval, interval, text, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.check_alert_rule(text, text, real, interval, interval, text, text, text, text, text) IS
'Raises invalid_parameter_value (or undefined_object for an unknown agent or group) naming the first argument of an alert rule that is not valid.';
REVOKE ALL ON FUNCTION pankha.check_alert_rule(text, text, real, interval, interval, text, text, text, text, text) FROM PUBLIC;

CREATE FUNCTION pankha.add_alert_rule(name text, condition text, threshold real DEFAULT NULL,
    duration interval DEFAULT '0', cooldown interval DEFAULT '5 minutes',
    severity text DEFAULT 'warning', agent_id text DEFAULT NULL, agent_group text DEFAULT NULL,
    sensor_type text DEFAULT NULL, target_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM pankha.check_alert_rule(name, condition, threshold, duration, cooldown, severity,
                                    agent_id, agent_group, sensor_type, target_id);
    INSERT INTO pankha.alert_rules (name, condition, threshold, duration, cooldown, severity,
                                    agent_id, agent_group, sensor_type, target_id)
    VALUES (name, condition, threshold, duration, cooldown, severity,
            agent_id, agent_group, sensor_type, target_id)
    RETURNING rule_id INTO id;
    RETURN id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'alert rule "%" already exists', name USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION pankha.add_alert_rule(text, text, real, interval, interval, text, text, text, text, text) IS
'Add an alert rule and return its id; every argument is checked and a bad one named in the error.  Conditions: temperature_above / temperature_below (degrees Celsius), fan_rpm_below / fan_rpm_above (rpm), agent_offline (no threshold).';

-- What every enabled rule sees right now: one row per (rule, agent,
-- series) with the value and whether the condition holds.  Readings
-- come from each online agent's newest frame; an offline agent's
-- sensors are not judged until it is back.
CREATE FUNCTION pankha.alert_observations(OUT rule_id bigint, OUT agent_id text,
    OUT target_id text, OUT value real, OUT active boolean)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
    WITH rules AS (
        SELECT r.*, a.agent_id AS matched_agent, a.status
        FROM pankha.alert_rules r
        JOIN pankha.agents a ON (r.agent_id IS NULL OR r.agent_id = a.agent_id)
        WHERE r.enabled
          AND (r.agent_group IS NULL OR pankha.agent_in_group(a.agent_id, r.agent_group))
    ), newest AS (
        SELECT DISTINCT ON (r.matched_agent) r.matched_agent AS agent_id, f.payload
        FROM rules r
        CROSS JOIN LATERAL (SELECT x.payload FROM pankha.readings x
                            WHERE x.agent_id = r.matched_agent
                            ORDER BY x.ts DESC LIMIT 1) f
        WHERE r.status = 'online' AND r.condition <> 'agent_offline'
    )
    SELECT r.rule_id, r.matched_agent, s.sensor_id, t.temperature,
           CASE r.condition WHEN 'temperature_above' THEN t.temperature > r.threshold
                            ELSE t.temperature < r.threshold END
    FROM rules r
    JOIN newest n ON n.agent_id = r.matched_agent
    CROSS JOIN LATERAL pankha.decode_temperatures(n.payload) t
    JOIN pankha.sensors s ON s.agent_id = r.matched_agent AND s.slot = t.slot
    WHERE r.condition IN ('temperature_above', 'temperature_below')
      AND (r.sensor_type IS NULL OR s.kind = r.sensor_type)
      AND (r.target_id IS NULL OR s.sensor_id = r.target_id)
    UNION ALL
    SELECT r.rule_id, r.matched_agent, f.fan_id, d.rpm,
           CASE r.condition WHEN 'fan_rpm_below' THEN d.rpm < r.threshold
                            ELSE d.rpm > r.threshold END
    FROM rules r
    JOIN newest n ON n.agent_id = r.matched_agent
    CROSS JOIN LATERAL pankha.decode_fans(n.payload) d
    JOIN pankha.fans f ON f.agent_id = r.matched_agent AND f.slot = d.slot
    WHERE r.condition IN ('fan_rpm_below', 'fan_rpm_above') AND d.rpm IS NOT NULL
      AND (r.target_id IS NULL OR f.fan_id = r.target_id)
    UNION ALL
    SELECT r.rule_id, r.matched_agent, '', NULL, r.status = 'offline'
    FROM rules r
    WHERE r.condition = 'agent_offline'
$$;
COMMENT ON FUNCTION pankha.alert_observations() IS
'What each enabled alert rule sees now: per agent and sensor or fan (target_id, '''' for agent rules) the current value and whether the condition holds.';

-- The JSON an alert is announced with.
CREATE FUNCTION pankha.alert_json(a pankha.alerts) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_build_object('alert_id', a.alert_id, 'rule_id', a.rule_id, 'rule', a.rule_name,
                          'agent_id', a.agent_id, 'target_id', a.target_id,
                          'condition', a.condition, 'threshold', a.threshold,
                          'severity', a.severity, 'state', a.state,
                          'value', CASE a.state WHEN 'firing' THEN a.value ELSE a.resolved_value END,
                          'fired_at', a.fired_at, 'resolved_at', a.resolved_at);
COMMENT ON FUNCTION pankha.alert_json(pankha.alerts) IS
'An alert as the JSON sent on NOTIFY pankha_alert: alert_id, rule_id, rule, agent_id, target_id, condition, threshold, severity, state (firing or resolved), value, fired_at, resolved_at.';

-- Judge every rule once: fire what held for its duration and is out of
-- its cooldown, resolve what stopped holding.
CREATE FUNCTION pankha.evaluate_alerts(OUT fired integer, OUT resolved integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    o record;
    r pankha.alert_rules;
    al pankha.alerts;
BEGIN
    fired := 0;
    resolved := 0;
    FOR o IN
        SELECT ob.*, st.pending_since, st.alert_id, st.last_resolved_at
        FROM pankha.alert_observations() ob
        LEFT JOIN pankha.alert_state st
               ON st.rule_id = ob.rule_id AND st.agent_id = ob.agent_id AND st.target_id = ob.target_id
    LOOP
        IF o.active THEN
            CONTINUE WHEN o.alert_id IS NOT NULL;
            SELECT * INTO r FROM pankha.alert_rules x WHERE x.rule_id = o.rule_id;
            IF now() - coalesce(o.pending_since, now()) >= r.duration
               AND (o.last_resolved_at IS NULL OR now() - o.last_resolved_at >= r.cooldown)
               AND pankha.alert_silenced_until(o.rule_id, o.agent_id, o.target_id) IS NULL THEN
                INSERT INTO pankha.alerts (rule_id, rule_name, agent_id, target_id, condition,
                                           threshold, severity, state, value)
                VALUES (r.rule_id, r.name, o.agent_id, nullif(o.target_id, ''), r.condition,
                        r.threshold, r.severity, 'firing', o.value)
                RETURNING * INTO al;
                PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
                fired := fired + 1;
            END IF;
            INSERT INTO pankha.alert_state AS s (rule_id, agent_id, target_id, pending_since, alert_id)
            VALUES (o.rule_id, o.agent_id, o.target_id, coalesce(o.pending_since, now()), al.alert_id)
            ON CONFLICT (rule_id, agent_id, target_id) DO UPDATE
            SET pending_since = EXCLUDED.pending_since, alert_id = EXCLUDED.alert_id;
            al := NULL;
        ELSIF o.alert_id IS NOT NULL THEN
            UPDATE pankha.alerts x SET state = 'resolved', resolved_at = now(), resolved_value = o.value
            WHERE x.alert_id = o.alert_id
            RETURNING * INTO al;
            IF FOUND THEN
                PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
                resolved := resolved + 1;
            END IF;
            UPDATE pankha.alert_state s
            SET pending_since = NULL, alert_id = NULL, last_resolved_at = now()
            WHERE s.rule_id = o.rule_id AND s.agent_id = o.agent_id AND s.target_id = o.target_id;
            al := NULL;
        ELSIF o.pending_since IS NOT NULL THEN
            UPDATE pankha.alert_state s SET pending_since = NULL
            WHERE s.rule_id = o.rule_id AND s.agent_id = o.agent_id AND s.target_id = o.target_id;
        END IF;
    END LOOP;

    -- A rule switched off or deleted resolves its open alerts.
    FOR al IN
        UPDATE pankha.alerts x SET state = 'resolved', resolved_at = now()
        WHERE x.state = 'firing'
          AND NOT EXISTS (SELECT FROM pankha.alert_rules y WHERE y.rule_id = x.rule_id AND y.enabled)
        RETURNING *
    LOOP
        PERFORM pg_notify('pankha_alert', pankha.alert_json(al)::text);
        UPDATE pankha.alert_state s SET alert_id = NULL, pending_since = NULL, last_resolved_at = now()
        WHERE s.alert_id = al.alert_id;
        resolved := resolved + 1;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pankha.evaluate_alerts() FROM PUBLIC;
COMMENT ON FUNCTION pankha.evaluate_alerts() IS
'Judge every enabled alert rule once: fire an alert (NOTIFY pankha_alert, state firing) for a series whose condition has held for the rule''s duration and whose last alert resolved more than the cooldown ago, and resolve (state resolved) those whose condition no longer holds.  The worker calls it each pass; returns the counts.';

-- Privileges (issue 13): the worker's and the owner's.
REVOKE ALL ON FUNCTION pankha.update_interval(text),
                       pankha.offline_threshold(text),
                       pankha.agent_in_group(text, text),
                       pankha.add_alert_rule(text, text, real, interval, interval, text, text, text, text, text),
                       pankha.alert_observations(),
                       pankha.alert_json(pankha.alerts)
    FROM PUBLIC;
