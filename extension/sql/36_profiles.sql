-- Pankha extension: fan profiles and per-fan limits.
--
-- A profile is a named curve of (temperature °C, speed %) points, strictly
-- increasing in temperature, with a hysteresis (°C) and a step (%).  It is
-- assigned to a fan together with the sensor that drives it; assigning
-- queues apply_profile with the whole curve and the fan's limits, so the
-- agent can keep running it without the server:
--   {"fan_id","sensor_id","profile":{"name","points":[[t,s],...],"hysteresis","step"},
--    "min_speed","max_speed"}
-- Changing a profile or a fan's limits queues it again to every fan
-- concerned.  The limits live in pankha.fans (min_speed, max_speed,
-- emergency_temp) and are set with pankha.set_fan_limits().
--
-- At the end, for the credentials part: the bridge role's grants on the
-- ingest functions, and pg_dump registration of the catalog tables the
-- parts above refer to; both need 00_schema.sql and 10_ingest.sql first.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.fan_profiles (
    profile_name text PRIMARY KEY CHECK (pankha.valid_id(profile_name)),
    points       jsonb NOT NULL CHECK (jsonb_typeof(points) = 'array'),
    hysteresis   real NOT NULL DEFAULT 2 CHECK (hysteresis BETWEEN 0 AND 10),
    step         real NOT NULL DEFAULT 5 CHECK (step BETWEEN 2 AND 100),
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pankha.fan_profiles IS
'Fan curves: points is an array of [temperature °C, speed %] pairs, strictly increasing in temperature; hysteresis in °C, step in %.';
SELECT pg_catalog.pg_extension_config_dump('pankha.fan_profiles', '');

CREATE TABLE pankha.fan_profile_assignments (
    agent_id     text NOT NULL,
    fan_id       text NOT NULL,
    profile_name text NOT NULL REFERENCES pankha.fan_profiles ON UPDATE CASCADE,
    sensor_id    text NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, fan_id),
    FOREIGN KEY (agent_id, fan_id) REFERENCES pankha.fans ON DELETE CASCADE,
    FOREIGN KEY (agent_id, sensor_id) REFERENCES pankha.sensors ON DELETE CASCADE
);
CREATE INDEX ON pankha.fan_profile_assignments (profile_name);
COMMENT ON TABLE pankha.fan_profile_assignments IS
'Which profile drives which fan, from which sensor.';
SELECT pg_catalog.pg_extension_config_dump('pankha.fan_profile_assignments', '');

CREATE TRIGGER fan_profiles_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.fan_profiles
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('profile');
CREATE TRIGGER fan_profile_assignments_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.fan_profile_assignments
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('profile_assignment');

-- Validates a curve and returns it as [[temperature, speed], ...]; points
-- may also be given as {"temperature": t, "speed": s}.
CREATE FUNCTION pankha.check_profile_points(points jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    point jsonb;
    i integer := 0;
    t jsonb;
    s jsonb;
    prev numeric;
    result jsonb := '[]';
BEGIN
    IF points IS NULL OR jsonb_typeof(points) <> 'array' THEN
        RAISE EXCEPTION 'points must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A curve is an array of [temperature, speed] pairs.';
    END IF;
    IF jsonb_array_length(points) NOT BETWEEN 2 AND 32 THEN
        RAISE EXCEPTION 'points must have 2 to 32 entries'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s were given.', jsonb_array_length(points));
    END IF;
    FOR point IN SELECT * FROM jsonb_array_elements(points) LOOP
        IF jsonb_typeof(point) = 'array' AND jsonb_array_length(point) = 2 THEN
            t := point -> 0;
            s := point -> 1;
        ELSIF jsonb_typeof(point) = 'object' AND point ?& '{temperature,speed}'
              AND (SELECT count(*) FROM jsonb_object_keys(point)) = 2 THEN
            t := point -> 'temperature';
            s := point -> 'speed';
        ELSE
            RAISE EXCEPTION 'points[%] must be a [temperature, speed] pair', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(t) <> 'number' OR t::numeric NOT BETWEEN -40 AND 150 THEN
            RAISE EXCEPTION 'points[%]: temperature % is not a number between -40 and 150', i, t
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(s) <> 'number' OR s::numeric NOT BETWEEN 0 AND 100 THEN
            RAISE EXCEPTION 'points[%]: speed % is not a number between 0 and 100', i, s
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF prev IS NOT NULL AND t::numeric <= prev THEN
            RAISE EXCEPTION 'points[%]: temperature % is not above the previous point''s %', i, t, prev
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Temperatures must be strictly increasing.';
        END IF;
        prev := t::numeric;
        result := result || jsonb_build_array(jsonb_build_array(t, s));
        i := i + 1;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION pankha.check_profile_points(jsonb) IS
'Validates a fan curve (2 to 32 points, temperatures -40..150 strictly increasing, speeds 0..100) and returns it as [[t, s], ...].';

-- Raises a clear error unless hysteresis and step are in range.
CREATE FUNCTION pankha.check_profile_tuning(hysteresis real, step real) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF hysteresis IS NULL OR hysteresis NOT BETWEEN 0 AND 10 OR hysteresis = 'NaN' THEN
        RAISE EXCEPTION 'hysteresis % is out of range', hysteresis
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'hysteresis is between 0 and 10 °C.';
    END IF;
    IF step IS NULL OR step NOT BETWEEN 2 AND 100 OR step = 'NaN' THEN
        RAISE EXCEPTION 'step % is out of range', step
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'step is between 2 and 100 %.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_profile_tuning(real, real) IS
'Raises numeric_value_out_of_range unless hysteresis is 0..10 °C and step 2..100 %.';

-- The apply_profile parameters for a fan, a profile and a sensor, all
-- checked against the catalog.
CREATE FUNCTION pankha.profile_parameters(agent_id text, fan_id jsonb, profile jsonb, sensor_id jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    fan pankha.fans;
    prof pankha.fan_profiles;
BEGIN
    fan := pankha.find_fan(agent_id, fan_id);
    IF profile IS NULL OR jsonb_typeof(profile) <> 'string' THEN
        RAISE EXCEPTION 'parameters.profile must be a profile name'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO prof FROM pankha.fan_profiles p WHERE p.profile_name = profile #>> '{}';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', profile #>> '{}'
            USING ERRCODE = 'undefined_object';
    END IF;
    IF sensor_id IS NULL OR jsonb_typeof(sensor_id) <> 'string' THEN
        RAISE EXCEPTION 'parameters.sensor_id must be a string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pankha.sensors s
                   WHERE s.agent_id = profile_parameters.agent_id
                     AND s.sensor_id = profile_parameters.sensor_id #>> '{}') THEN
        RAISE EXCEPTION 'sensor "%" of agent "%" does not exist', sensor_id #>> '{}', agent_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Sensors are known once the agent has reported them.';
    END IF;
    RETURN jsonb_build_object(
        'fan_id', fan.fan_id, 'sensor_id', sensor_id,
        'profile', jsonb_build_object('name', prof.profile_name, 'points', prof.points,
                                      'hysteresis', prof.hysteresis, 'step', prof.step),
        'min_speed', fan.min_speed, 'max_speed', fan.max_speed);
END
$$;
COMMENT ON FUNCTION pankha.profile_parameters(text, jsonb, jsonb, jsonb) IS
'The apply_profile parameters (curve and fan limits) for a fan of an agent, a profile and a sensor; raises when one does not exist.';

-- Queues apply_profile again to every fan the profile (or, with a fan
-- given, that fan) is assigned to; returns how many.
CREATE FUNCTION pankha.reapply_profiles(profile_name text, agent_id text DEFAULT NULL,
                                        fan_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    a pankha.fan_profile_assignments;
    n integer := 0;
BEGIN
    FOR a IN SELECT * FROM pankha.fan_profile_assignments x
             WHERE (reapply_profiles.profile_name IS NULL OR x.profile_name = reapply_profiles.profile_name)
               AND (reapply_profiles.agent_id IS NULL OR x.agent_id = reapply_profiles.agent_id)
               AND (reapply_profiles.fan_id IS NULL OR x.fan_id = reapply_profiles.fan_id)
             ORDER BY x.agent_id, x.fan_id
    LOOP
        PERFORM pankha.send_command(a.agent_id, 'apply_profile',
                                    jsonb_build_object('fan_id', a.fan_id, 'sensor_id', a.sensor_id,
                                                       'profile', a.profile_name),
                                    'normal', interval '7 days');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.reapply_profiles(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.reapply_profiles(text, text, text) IS
'Internal: queues apply_profile to the fans a profile is assigned to (or one fan); returns how many.';

CREATE FUNCTION pankha.create_profile(name text, points jsonb, hysteresis real DEFAULT 2,
                                      step real DEFAULT 5, description text DEFAULT NULL,
                                      ui_user text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    curve jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    IF name IS NULL OR NOT pankha.valid_id(name) THEN
        RAISE EXCEPTION 'invalid profile name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A profile name is 1 to 64 bytes long without control characters.';
    END IF;
    curve := pankha.check_profile_points(points);
    PERFORM pankha.check_profile_tuning(hysteresis, step);
    INSERT INTO pankha.fan_profiles (profile_name, points, hysteresis, step, description)
    VALUES (name, curve, hysteresis, step, description);
    RETURN name;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'profile "%" already exists', name
        USING ERRCODE = 'unique_violation', HINT = 'Change it with pankha.update_profile().';
END
$$;
REVOKE ALL ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text) IS
'Creates a fan profile from [[temperature, speed], ...] points with hysteresis (°C) and step (%).';

CREATE FUNCTION pankha.update_profile(name text, points jsonb, hysteresis real DEFAULT 2,
                                      step real DEFAULT 5, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    curve jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    curve := pankha.check_profile_points(points);
    PERFORM pankha.check_profile_tuning(hysteresis, step);
    UPDATE pankha.fan_profiles p
    SET points = curve, hysteresis = update_profile.hysteresis, step = update_profile.step,
        updated_at = now()
    WHERE p.profile_name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    RETURN pankha.reapply_profiles(name);
END
$$;
REVOKE ALL ON FUNCTION pankha.update_profile(text, jsonb, real, real, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.update_profile(text, jsonb, real, real, text) IS
'Changes a profile''s curve, hysteresis and step and queues apply_profile to every fan using it; returns how many.';

CREATE FUNCTION pankha.delete_profile(name text, ui_user text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    users integer;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    SELECT count(*) INTO users FROM pankha.fan_profile_assignments a WHERE a.profile_name = name;
    IF users > 0 THEN
        RAISE EXCEPTION 'profile "%" is assigned to % fans', name, users
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Unassign it with pankha.unassign_profile() first.';
    END IF;
    DELETE FROM pankha.fan_profiles p WHERE p.profile_name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'profile "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pankha.delete_profile(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.delete_profile(text, text) IS
'Deletes a profile that no fan uses.';

CREATE FUNCTION pankha.assign_profile(agent_id text, fan_id text, profile text, sensor_id text,
                                      ui_user text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    params jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    params := pankha.profile_parameters(agent_id, to_jsonb(fan_id), to_jsonb(profile), to_jsonb(sensor_id));
    INSERT INTO pankha.fan_profile_assignments AS x (agent_id, fan_id, profile_name, sensor_id)
    VALUES (agent_id, fan_id, profile, sensor_id)
    ON CONFLICT ON CONSTRAINT fan_profile_assignments_pkey
    DO UPDATE SET profile_name = excluded.profile_name, sensor_id = excluded.sensor_id,
                  assigned_at = now();
    RETURN pankha.send_command(agent_id, 'apply_profile', params, 'normal', interval '7 days');
END
$$;
REVOKE ALL ON FUNCTION pankha.assign_profile(text, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.assign_profile(text, text, text, text, text) IS
'Makes a profile drive a fan from a sensor and queues apply_profile with the whole curve and the fan''s limits; returns the command id.';

CREATE FUNCTION pankha.unassign_profile(agent_id text, fan_id text, ui_user text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.check_agent(agent_id);
    DELETE FROM pankha.fan_profile_assignments x
    WHERE x.agent_id = unassign_profile.agent_id AND x.fan_id = unassign_profile.fan_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fan "%" of agent "%" has no profile', fan_id, agent_id
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN pankha.send_command(agent_id, 'restore_auto', jsonb_build_object('fan_id', fan_id),
                               'normal', interval '7 days');
END
$$;
REVOKE ALL ON FUNCTION pankha.unassign_profile(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.unassign_profile(text, text, text) IS
'Removes a fan''s profile and queues restore_auto for that fan; returns the command id.';

CREATE FUNCTION pankha.set_fan_limits(agent_id text, fan_id text, min_speed real, max_speed real,
                                      emergency_temp real DEFAULT NULL, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    fan pankha.fans;
    before jsonb;
    queued integer;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    PERFORM pankha.check_agent(agent_id);
    fan := pankha.find_fan(agent_id, to_jsonb(fan_id));
    IF min_speed IS NULL OR max_speed IS NULL OR min_speed = 'NaN' OR max_speed = 'NaN'
       OR min_speed NOT BETWEEN 0 AND 100 OR max_speed NOT BETWEEN 0 AND 100 OR min_speed > max_speed THEN
        RAISE EXCEPTION 'invalid speed limits for fan "%"', fan_id
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('min_speed and max_speed are percentages with min_speed <= max_speed; %s and %s were given.',
                                  coalesce(min_speed::text, 'NULL'), coalesce(max_speed::text, 'NULL'));
    END IF;
    IF emergency_temp IS NOT NULL AND (emergency_temp NOT BETWEEN 0 AND 250 OR emergency_temp = 'NaN') THEN
        RAISE EXCEPTION 'invalid emergency_temp for fan "%"', fan_id
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = 'emergency_temp is between 0 and 250 °C, or NULL for the agent setting.';
    END IF;
    IF fan.min_speed = min_speed AND fan.max_speed = max_speed
       AND fan.emergency_temp IS NOT DISTINCT FROM emergency_temp THEN
        RETURN 0;
    END IF;
    before := pankha.settings_snapshot(ARRAY[agent_id]);
    UPDATE pankha.fans f
    SET min_speed = set_fan_limits.min_speed, max_speed = set_fan_limits.max_speed,
        emergency_temp = set_fan_limits.emergency_temp
    WHERE f.agent_id = set_fan_limits.agent_id AND f.fan_id = set_fan_limits.fan_id;
    PERFORM pankha.audit('fan_limits.update', agent_id,
                         jsonb_build_object('fan_id', fan_id,
                                            'old', jsonb_build_object('min_speed', fan.min_speed,
                                                                      'max_speed', fan.max_speed,
                                                                      'emergency_temp', fan.emergency_temp),
                                            'new', jsonb_build_object('min_speed', min_speed,
                                                                      'max_speed', max_speed,
                                                                      'emergency_temp', emergency_temp)));
    queued := pankha.queue_settings_updates(before);
    RETURN queued + pankha.reapply_profiles(NULL, agent_id, fan_id);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) IS
'Sets a fan''s safety limits in the catalog and queues them to the agent (update_settings, and apply_profile when a profile drives the fan); returns how many commands were queued.';

GRANT EXECUTE ON FUNCTION pankha.create_profile(text, jsonb, real, real, text, text),
                          pankha.update_profile(text, jsonb, real, real, text),
                          pankha.delete_profile(text, text),
                          pankha.assign_profile(text, text, text, text, text),
                          pankha.unassign_profile(text, text, text)
    TO pankha_bridge;
-- pankha.set_fan_limits is the administrator's (M1): nothing a bridge can be
-- made to do lowers a fan's floor.
GRANT SELECT ON pankha.fan_profiles, pankha.fan_profile_assignments TO pankha_reader;

-- The bridge calls the ingest functions of 10_ingest.sql (every overload
-- of ingest, ingest_batch and ingest_many); they are granted here, after
-- every part that may define them.  The bridge has no table privileges, so
-- they run as their owner, with the same fixed search_path as every other
-- SECURITY DEFINER function, and only the roles granted may call them.
DO $grants$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pankha'::regnamespace
                AND p.proname IN ('ingest', 'ingest_batch', 'ingest_many')
              ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pankha, pg_temp', fn);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pankha_bridge', fn);
    END LOOP;
END
$grants$;
GRANT SELECT ON pankha.agents, pankha.sensors, pankha.fans, pankha.readings TO pankha_reader;
-- A bridge also serves the dashboard's reports.  Role membership is
-- cluster-wide, so it is granted only once.
DO $member$
BEGIN
    IF NOT pg_catalog.pg_has_role('pankha_bridge', 'pankha_reader', 'MEMBER') THEN
        GRANT pankha_reader TO pankha_bridge;
    END IF;
END
$member$;

-- Tokens, settings, commands and profile assignments refer to agents, fans
-- and sensors, so a dump that keeps them must keep those catalog rows too
-- (pg_dump leaves out extension tables not registered here).
DO $dump$
DECLARE
    rel text;
BEGIN
    FOREACH rel IN ARRAY ARRAY['pankha.agents', 'pankha.sensors', 'pankha.fans'] LOOP
        IF to_regclass(rel) IS NOT NULL THEN
            PERFORM pg_catalog.pg_extension_config_dump(rel::regclass, '');
        END IF;
    END LOOP;
END
$dump$;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.check_profile_points(jsonb),
                       pankha.check_profile_tuning(real, real),
                       pankha.profile_parameters(text, jsonb, jsonb, jsonb)
    FROM PUBLIC;
