-- Pankha extension: agent settings at three levels.
--
-- A setting is stored for a scope, written as text:
--   'global'          the fleet-wide default,
--   'group:<name>'    the agents of a group (each agent is in at most one),
--   'agent:<id>'      one agent,
-- and pankha.effective_settings(agent_id) resolves them: built-in default,
-- then global, then group, then agent.  The result also carries "fans", the
-- per-fan safety limits from the catalog, when any are set.  Every function
-- that changes what an agent's effective settings are queues an
-- update_settings command with the new effective settings to that agent
-- (delivered as config_update); older unfinished ones are superseded.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

CREATE TABLE pankha.setting_definitions (
    key           text PRIMARY KEY,
    value_type    text NOT NULL CHECK (value_type IN ('number', 'boolean', 'string')),
    min_value     numeric,
    max_value     numeric,
    allowed       text[],
    default_value jsonb NOT NULL,
    unit          text,
    description   text NOT NULL
);
COMMENT ON TABLE pankha.setting_definitions IS
'The settings agents know, with their type, range or allowed values, and built-in default.';

INSERT INTO pankha.setting_definitions VALUES
    ('update_interval', 'number', 0.5, 30, NULL, '3', 's', 'Seconds between two data frames.'),
    ('emergency_temp', 'number', 60, 100, NULL, '85', '°C', 'Temperature at which every fan goes to full speed.'),
    ('failsafe_speed', 'number', 0, 100, NULL, '70', '%', 'Fan speed used when the agent loses the server.'),
    ('fan_step', 'number', 2, 100, NULL, '5', '%', 'Largest change of a fan speed in one step.'),
    ('hysteresis', 'number', 0, 10, NULL, '2', '°C', 'Temperature change needed before a fan speed follows it down.'),
    ('log_level', 'string', NULL, NULL, '{trace,debug,info,warn,error}', '"info"', NULL, 'Agent log verbosity.'),
    ('enable_fan_control', 'boolean', NULL, NULL, NULL, 'true', NULL, 'Whether the agent drives fans at all.');

CREATE TABLE pankha.agent_groups (
    group_name  text PRIMARY KEY CHECK (pankha.valid_id(group_name)),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pankha.agent_groups IS
'Named groups of agents; settings can be given per group.';
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_groups', '');

CREATE TABLE pankha.agent_group_members (
    agent_id   text PRIMARY KEY REFERENCES pankha.agents ON DELETE CASCADE,
    group_name text NOT NULL REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    added_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON pankha.agent_group_members (group_name);
COMMENT ON TABLE pankha.agent_group_members IS
'The group of each agent that is in one (at most one per agent).';
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_group_members', '');

CREATE TABLE pankha.settings (
    scope_kind text NOT NULL CHECK (scope_kind IN ('global', 'group', 'agent')),
    group_name text REFERENCES pankha.agent_groups ON DELETE CASCADE ON UPDATE CASCADE,
    agent_id   text REFERENCES pankha.agents ON DELETE CASCADE,
    key        text NOT NULL REFERENCES pankha.setting_definitions,
    value      jsonb NOT NULL,
    scope      text GENERATED ALWAYS AS (CASE scope_kind WHEN 'global' THEN 'global'
                                         WHEN 'group' THEN 'group:' || group_name
                                         ELSE 'agent:' || agent_id END) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT session_user,
    CHECK ((scope_kind = 'group') = (group_name IS NOT NULL)),
    CHECK ((scope_kind = 'agent') = (agent_id IS NOT NULL)),
    CONSTRAINT settings_scope_key UNIQUE NULLS NOT DISTINCT (scope_kind, group_name, agent_id, key)
);
CREATE INDEX ON pankha.settings (agent_id);
COMMENT ON TABLE pankha.settings IS
'Settings given for a scope (global, a group or an agent); change them with pankha.set_setting() and pankha.reset_setting() so agents are told.';
SELECT pg_catalog.pg_extension_config_dump('pankha.settings', '');

CREATE TRIGGER settings_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.settings
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('setting');
CREATE TRIGGER agent_groups_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.agent_groups
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('group');
CREATE TRIGGER agent_group_members_audit AFTER INSERT OR UPDATE OR DELETE ON pankha.agent_group_members
FOR EACH ROW EXECUTE FUNCTION pankha.audit_change('group_member');

-- Raises a clear error unless value is valid for the setting key.
CREATE FUNCTION pankha.check_setting(key text, value jsonb, what text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    def pankha.setting_definitions;
    name text := coalesce(what || '.', '') || key;
BEGIN
    SELECT * INTO def FROM pankha.setting_definitions d WHERE d.key = check_setting.key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('The settings are: %s.',
                                (SELECT string_agg(d.key, ', ' ORDER BY d.key) FROM pankha.setting_definitions d));
    END IF;
    IF value IS NULL OR jsonb_typeof(value) IS DISTINCT FROM def.value_type THEN
        RAISE EXCEPTION 'setting "%" must be a %', name, def.value_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s was given.', coalesce(jsonb_typeof(value), 'NULL'));
    END IF;
    IF def.value_type = 'number' AND value::numeric NOT BETWEEN def.min_value AND def.max_value THEN
        RAISE EXCEPTION 'setting "%" is out of range', name
            USING ERRCODE = 'numeric_value_out_of_range',
                  DETAIL = format('%s must be between %s and %s%s; %s was given.', key,
                                  def.min_value, def.max_value, coalesce(' ' || def.unit, ''), value);
    END IF;
    IF def.allowed IS NOT NULL AND value #>> '{}' <> ALL (def.allowed) THEN
        RAISE EXCEPTION 'setting "%" has an unknown value %', name, value
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%s is one of %s.', key, array_to_string(def.allowed, ', '));
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_setting(text, jsonb, text) IS
'Raises invalid_parameter_value (unknown key, wrong type or value) or numeric_value_out_of_range unless the value suits the setting.';

-- Validates a whole settings object, as carried by update_settings.
CREATE FUNCTION pankha.check_settings(settings jsonb, what text DEFAULT 'settings')
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    item record;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR item IN SELECT * FROM jsonb_each(settings) ORDER BY 1 LOOP
        -- "fans" carries catalog limits, not a setting of its own.
        IF item.key = 'fans' THEN
            IF jsonb_typeof(item.value) <> 'object' THEN
                RAISE EXCEPTION '%.fans must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSE
            PERFORM pankha.check_setting(item.key, item.value, what);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.check_settings(jsonb, text) IS
'Raises a clear error unless every key of the object is a known setting with a valid value ("fans" is allowed as an object).';

-- Whether the session is an administrator's: the owner of the extension's
-- schema or a role with its privileges (a superuser).  A bridge's login,
-- a reader or any other role is not; SECURITY DEFINER does not change
-- session_user, so this holds inside them too.
CREATE FUNCTION pankha.session_is_admin() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN pg_catalog.pg_has_role(session_user,
    (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pankha'), 'USAGE');
COMMENT ON FUNCTION pankha.session_is_admin() IS
'Internal: true when the session user has the privileges of the extension''s owner (an administrator).';

-- M1: settings carried by an update_settings command may not make an agent
-- less safe than its effective settings say: the fan limits must be the
-- catalog's (only pankha.set_fan_limits changes those), failsafe_speed may
-- only go up and emergency_temp only down.
CREATE FUNCTION pankha.check_settings_safety(agent_id text, settings jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    eff jsonb := pankha.effective_settings(agent_id);
BEGIN
    IF settings ? 'fans' AND settings -> 'fans' IS DISTINCT FROM coalesce(eff -> 'fans', '{}') THEN
        RAISE EXCEPTION 'parameters.fans differs from the fan limits of agent "%"', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Fan limits are taken from the catalog, where only pankha.set_fan_limits changes them.',
                  HINT = 'Leave "fans" out; the agent gets the catalog''s limits with its settings.';
    END IF;
    IF (settings -> 'failsafe_speed')::numeric < (eff -> 'failsafe_speed')::numeric THEN
        RAISE EXCEPTION 'parameters.failsafe_speed % is below the effective % of agent "%"',
            settings -> 'failsafe_speed', eff -> 'failsafe_speed', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A command may raise the failsafe speed, not lower it; an administrator lowers it with pankha.set_setting.';
    END IF;
    IF (settings -> 'emergency_temp')::numeric > (eff -> 'emergency_temp')::numeric THEN
        RAISE EXCEPTION 'parameters.emergency_temp % is above the effective % of agent "%"',
            settings -> 'emergency_temp', eff -> 'emergency_temp', agent_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A command may lower the emergency temperature, not raise it; an administrator raises it with pankha.set_setting.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.check_settings_safety(text, jsonb) IS
'Internal: raises insufficient_privilege when settings sent to an agent carry fan limits other than the catalog''s, a lower failsafe_speed or a higher emergency_temp than its effective settings.';

-- Splits a scope into its kind and name, checking that the group or the
-- agent exists.
CREATE FUNCTION pankha.parse_scope(scope text, OUT scope_kind text, OUT group_name text,
                                   OUT agent_id text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF scope = 'global' THEN
        scope_kind := 'global';
    ELSIF scope LIKE 'group:%' THEN
        scope_kind := 'group';
        group_name := substr(scope, 7);
        IF NOT EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = parse_scope.group_name) THEN
            RAISE EXCEPTION 'group "%" does not exist', group_name
                USING ERRCODE = 'undefined_object', HINT = 'Create it with pankha.create_group().';
        END IF;
    ELSIF scope LIKE 'agent:%' THEN
        scope_kind := 'agent';
        agent_id := substr(scope, 7);
        PERFORM pankha.check_agent(agent_id);
    ELSE
        RAISE EXCEPTION 'invalid scope "%"', scope
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A scope is global, group:<name> or agent:<agent_id>.';
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.parse_scope(text) IS
'Splits global, group:<name> or agent:<agent_id> into its parts; raises when the group or agent does not exist.';

CREATE FUNCTION pankha.effective_settings(agent_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    result jsonb;
    fans jsonb;
BEGIN
    PERFORM pankha.check_agent(agent_id);
    SELECT jsonb_object_agg(d.key, coalesce(
               (SELECT s.value FROM pankha.settings s
                LEFT JOIN pankha.agent_group_members m ON m.agent_id = effective_settings.agent_id
                WHERE s.key = d.key
                  AND (s.scope_kind = 'global'
                       OR (s.scope_kind = 'group' AND s.group_name = m.group_name)
                       OR (s.scope_kind = 'agent' AND s.agent_id = effective_settings.agent_id))
                ORDER BY CASE s.scope_kind WHEN 'agent' THEN 0 WHEN 'group' THEN 1 ELSE 2 END
                LIMIT 1),
               d.default_value))
    INTO result
    FROM pankha.setting_definitions d;

    SELECT jsonb_object_agg(f.fan_id, jsonb_strip_nulls(jsonb_build_object(
               'min_speed', f.min_speed, 'max_speed', f.max_speed, 'emergency_temp', f.emergency_temp)))
    INTO fans
    FROM pankha.fans f
    WHERE f.agent_id = effective_settings.agent_id
      AND (f.min_speed > 0 OR f.max_speed < 100 OR f.emergency_temp IS NOT NULL);
    IF fans IS NOT NULL THEN
        result := result || jsonb_build_object('fans', fans);
    END IF;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION pankha.effective_settings(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.effective_settings(text) IS
'An agent''s settings resolved from built-in defaults, global, its group and its own, plus "fans" with the fan limits set in the catalog.';

-- Serialises changes to settings, groups and fan limits, so each change
-- sees the one before it and the update it queues is complete.
CREATE FUNCTION pankha.lock_settings() RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pankha.settings')::bigint) $$;
COMMENT ON FUNCTION pankha.lock_settings() IS
'Internal: a transaction lock taken by every function that changes effective settings.';

-- The effective settings of the given agents, keyed by agent id.
CREATE FUNCTION pankha.settings_snapshot(agent_ids text[]) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce(jsonb_object_agg(a.agent_id, pankha.effective_settings(a.agent_id)), '{}')
FROM pankha.agents a WHERE a.agent_id = ANY (agent_ids)
$$;
REVOKE ALL ON FUNCTION pankha.settings_snapshot(text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.settings_snapshot(text[]) IS
'Internal: agent id -> effective settings for the given agents.';

-- Queues update_settings to every agent of the snapshot whose effective
-- settings differ from it now, and returns how many were queued.
CREATE FUNCTION pankha.queue_settings_updates(before jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    agent text;
    now_settings jsonb;
    n integer := 0;
BEGIN
    FOR agent IN SELECT jsonb_object_keys(before) ORDER BY 1 LOOP
        now_settings := pankha.effective_settings(agent);
        -- M1: only an administrator makes an agent less safe (a lower
        -- failsafe_speed, a higher emergency_temp); a bridge, on behalf of
        -- a dashboard, may only make it safer.  The change is undone.
        IF ((now_settings -> 'failsafe_speed')::numeric < (before -> agent -> 'failsafe_speed')::numeric
            OR (now_settings -> 'emergency_temp')::numeric > (before -> agent -> 'emergency_temp')::numeric)
           AND NOT pankha.session_is_admin() THEN
            RAISE EXCEPTION 'only an administrator may lower failsafe_speed or raise emergency_temp'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('For agent %s: failsafe_speed %s -> %s, emergency_temp %s -> %s.', agent,
                                      before -> agent -> 'failsafe_speed', now_settings -> 'failsafe_speed',
                                      before -> agent -> 'emergency_temp', now_settings -> 'emergency_temp'),
                      HINT = 'Run it in SQL as the owner of the extension.';
        END IF;
        IF now_settings IS DISTINCT FROM before -> agent THEN
            PERFORM pankha.send_command(agent, 'update_settings', now_settings, 'normal', interval '7 days');
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.queue_settings_updates(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.queue_settings_updates(jsonb) IS
'Internal: queues update_settings to the agents whose effective settings changed since the snapshot.';

-- The agents a scope reaches.
CREATE FUNCTION pankha.scope_agents(scope_kind text, group_name text, agent_id text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce(array_agg(a.agent_id ORDER BY a.agent_id), '{}')
FROM pankha.agents a
WHERE scope_kind = 'global'
   OR (scope_kind = 'agent' AND a.agent_id = scope_agents.agent_id)
   OR (scope_kind = 'group' AND a.agent_id IN (SELECT m.agent_id FROM pankha.agent_group_members m
                                               WHERE m.group_name = scope_agents.group_name))
$$;
COMMENT ON FUNCTION pankha.scope_agents(text, text, text) IS
'The ids of the agents a scope (global, a group, an agent) reaches.';

CREATE FUNCTION pankha.set_setting(scope text, key text, value jsonb, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope(scope);
    PERFORM pankha.check_setting(key, value);
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, s.agent_id));
    INSERT INTO pankha.settings AS t (scope_kind, group_name, agent_id, key, value, updated_by)
    VALUES (s.scope_kind, s.group_name, s.agent_id, key, value,
            coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user))
    ON CONFLICT ON CONSTRAINT settings_scope_key
    DO UPDATE SET value = excluded.value, updated_at = now(), updated_by = excluded.updated_by
    WHERE t.value IS DISTINCT FROM excluded.value;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_setting(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_setting(text, text, jsonb, text) IS
'Sets a setting for a scope (global, group:<name>, agent:<agent_id>) and queues update_settings to every agent whose effective settings change; returns how many.';

CREATE FUNCTION pankha.reset_setting(scope text, key text, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope(scope);
    IF NOT EXISTS (SELECT FROM pankha.setting_definitions d WHERE d.key = reset_setting.key) THEN
        PERFORM pankha.check_setting(key, NULL);
    END IF;
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, s.agent_id));
    DELETE FROM pankha.settings t
    WHERE t.scope_kind = s.scope_kind AND t.group_name IS NOT DISTINCT FROM s.group_name
      AND t.agent_id IS NOT DISTINCT FROM s.agent_id AND t.key = reset_setting.key;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.reset_setting(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.reset_setting(text, text, text) IS
'Removes a setting from a scope, so the next level applies, and queues update_settings where that changes something; returns how many.';

CREATE FUNCTION pankha.create_group(group_name text, description text DEFAULT NULL,
                                    ui_user text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    IF group_name IS NULL OR NOT pankha.valid_id(group_name) THEN
        RAISE EXCEPTION 'invalid group name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A group name is 1 to 64 bytes long without control characters.';
    END IF;
    INSERT INTO pankha.agent_groups (group_name, description) VALUES (group_name, description);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'group "%" already exists', group_name USING ERRCODE = 'unique_violation';
END
$$;
REVOKE ALL ON FUNCTION pankha.create_group(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.create_group(text, text, text) IS
'Creates an empty agent group.';

CREATE FUNCTION pankha.delete_group(group_name text, ui_user text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    s record;
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    s := pankha.parse_scope('group:' || group_name);
    before := pankha.settings_snapshot(pankha.scope_agents(s.scope_kind, s.group_name, NULL));
    DELETE FROM pankha.agent_groups g WHERE g.group_name = delete_group.group_name;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.delete_group(text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.delete_group(text, text) IS
'Deletes a group with its settings; its agents fall back to the global settings (update_settings queued where that changes something).';

CREATE FUNCTION pankha.set_agent_group(agent_id text, group_name text, ui_user text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    before jsonb;
BEGIN
    PERFORM pankha.set_ui_user(ui_user);
    PERFORM pankha.lock_settings();
    PERFORM pankha.check_agent(agent_id);
    IF group_name IS NOT NULL THEN
        PERFORM pankha.parse_scope('group:' || group_name);
    END IF;
    before := pankha.settings_snapshot(ARRAY[agent_id]);
    IF group_name IS NULL THEN
        DELETE FROM pankha.agent_group_members m WHERE m.agent_id = set_agent_group.agent_id;
    ELSE
        INSERT INTO pankha.agent_group_members AS m (agent_id, group_name)
        VALUES (agent_id, group_name)
        ON CONFLICT ON CONSTRAINT agent_group_members_pkey
        DO UPDATE SET group_name = excluded.group_name, added_at = now()
        WHERE m.group_name <> excluded.group_name;
    END IF;
    RETURN pankha.queue_settings_updates(before);
END
$$;
REVOKE ALL ON FUNCTION pankha.set_agent_group(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.set_agent_group(text, text, text) IS
'Puts an agent in a group (NULL: in none) and queues update_settings when its effective settings change; returns 1 if queued, else 0.';

CREATE VIEW pankha.agent_settings AS
SELECT a.agent_id, m.group_name, pankha.effective_settings(a.agent_id) AS settings
FROM pankha.agents a LEFT JOIN pankha.agent_group_members m USING (agent_id);
COMMENT ON VIEW pankha.agent_settings IS
'Each agent with its group and effective settings.';

GRANT EXECUTE ON FUNCTION pankha.effective_settings(text),
                          pankha.set_setting(text, text, jsonb, text),
                          pankha.reset_setting(text, text, text),
                          pankha.set_agent_group(text, text, text)
    TO pankha_bridge;
GRANT SELECT ON pankha.setting_definitions, pankha.agent_groups, pankha.agent_group_members,
                pankha.settings TO pankha_reader;
GRANT EXECUTE ON FUNCTION pankha.effective_settings(text) TO pankha_reader;
GRANT SELECT ON pankha.agent_settings TO pankha_reader;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.session_is_admin(),
                       pankha.check_settings_safety(text, jsonb),
                       pankha.check_setting(text, jsonb, text),
                       pankha.check_settings(jsonb, text),
                       pankha.lock_settings(),
                       pankha.parse_scope(text),
                       pankha.scope_agents(text, text, text)
    FROM PUBLIC;
