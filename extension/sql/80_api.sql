-- Pankha extension: the dashboard API (issue 11).  Every HTTP endpoint and
-- /ws/ui action of the bridge is one call of a function here, so the rules
-- (who may do what, which input is valid, what is audited) are the same for
-- the bridge and for people calling them in SQL.  Each has the signature
--
--   pankha.api_<name>(ui_user text, ui_role text, args jsonb DEFAULT '{}') RETURNS jsonb
--
-- ui_user and ui_role are the dashboard user and role the bridge learned
-- from the bearer token (pankha.authenticate_ui() or its credential copy);
-- args merges the route's path parameters, query string and JSON body
-- (query-string numbers and booleans may arrive as strings); the result is
-- the HTTP response body as is.  Errors carry an SQLSTATE, a message that
-- starts with the field it is about, and that field in the error's column
-- name (PG_DIAG_COLUMN_NAME), so the bridge can answer
-- {"error":{"code","message","field"}} without parsing text.  Unknown
-- fields of args are ignored, as on the wire.  docs/api-functions.md maps
-- each function to its route, /ws/ui message and minimum role.
\echo Use "CREATE EXTENSION pankha" to load this file. \quit

-- ---------------------------------------------------------------------
-- Limits and argument helpers
-- ---------------------------------------------------------------------

CREATE FUNCTION pankha.api_limits() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"page_size_default": 100, "page_size_max": 1000, "report_page_size_max": 100,
         "history_points_default": 500, "history_points_max": 5000, "history_series_max": 32,
         "report_range_max_days": 31, "members_max": 10000, "statement_timeout": "5s"}'::jsonb;
REVOKE ALL ON FUNCTION pankha.api_limits() FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_limits() IS
'The bounds of the dashboard API: page sizes, history points per series and series per request, report range, group membership list size, and the statement_timeout a bridge sets on dashboard queries.';

-- Raises an API error: SQLSTATE, a message naming the field, the field as
-- the error's column name, and an optional detail.
CREATE FUNCTION pankha.api_raise(code text, field text, message text, detail text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, COLUMN = coalesce(field, '');
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, COLUMN = coalesce(field, ''),
                          DETAIL = detail;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_raise(text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_raise(text, text, text, text) IS
'Internal: raises an error with the SQLSTATE, message and detail given and the field as its column name.';

-- The rank of a dashboard role; NULL for anything else.
CREATE FUNCTION pankha.api_role_rank(role text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE role WHEN 'viewer' THEN 1 WHEN 'operator' THEN 2 WHEN 'admin' THEN 3 END;
REVOKE ALL ON FUNCTION pankha.api_role_rank(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_role_rank(text) IS
'Internal: 1 for viewer, 2 for operator, 3 for admin, NULL otherwise.';

-- Checks that a dashboard role may do something, and makes the user the
-- actor of the audit rows the rest of the transaction writes.
CREATE FUNCTION pankha.api_authorize(ui_user text, ui_role text, need text, action text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF pankha.api_role_rank(ui_role) IS NULL THEN
        PERFORM pankha.api_raise('28000', 'ui_role',
                                 format('ui_role: %s is not a dashboard role', coalesce(quote_literal(ui_role), 'NULL')),
                                 'ui_role is viewer, operator or admin, as the dashboard token says.');
    END IF;
    IF ui_user IS NOT NULL AND NOT pankha.valid_id(ui_user) THEN
        PERFORM pankha.api_raise('22023', 'ui_user', 'ui_user: must be 1 to 64 bytes without control characters');
    END IF;
    IF pankha.api_role_rank(ui_role) < pankha.api_role_rank(need) THEN
        PERFORM pankha.api_raise('42501', NULL, format('the %s role may not %s', ui_role, action),
                                 format('This needs the %s role%s.', need,
                                        CASE need WHEN 'admin' THEN '' ELSE ' or higher' END));
    END IF;
    PERFORM pankha.set_ui_user(ui_user);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_authorize(text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_authorize(text, text, text, text) IS
'Internal: raises invalid_authorization_specification (28000) for a role that is not viewer, operator or admin, insufficient_privilege (42501) when it ranks below need; then records ui_user as the actor of the transaction''s audit rows.';

-- The args object of a call ('{}' for NULL).
CREATE FUNCTION pankha.api_args(args jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    IF args IS NULL OR jsonb_typeof(args) = 'null' THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(args) <> 'object' THEN
        PERFORM pankha.api_raise('22023', 'args', format('args: must be a JSON object, not %s', jsonb_typeof(args)));
    END IF;
    RETURN args;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_args(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_args(jsonb) IS
'Internal: the arguments of an API call as an object; raises invalid_parameter_value for anything else.';

-- Whether a field is present (JSON null counts as absent).
CREATE FUNCTION pankha.api_has(args jsonb, field text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(jsonb_typeof(args -> field), 'null') <> 'null';
REVOKE ALL ON FUNCTION pankha.api_has(jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_has(jsonb, text) IS
'Internal: true when args carries the field with a value other than null.';

CREATE FUNCTION pankha.api_text(args jsonb, field text, required boolean DEFAULT false,
                                max_length integer DEFAULT 256)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    v jsonb := args -> field;
    t text;
BEGIN
    IF NOT pankha.api_has(args, field) THEN
        IF required THEN
            PERFORM pankha.api_raise('22023', field, format('%s: is required', field));
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM pankha.api_raise('22023', field, format('%s: must be a string, not %s', field, jsonb_typeof(v)));
    END IF;
    t := v #>> '{}';
    IF length(t) > max_length OR t ~ '[[:cntrl:]]' THEN
        PERFORM pankha.api_raise('22023', field,
                                 format('%s: must be at most %s characters without control characters', field, max_length));
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_text(jsonb, text, boolean, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_text(jsonb, text, boolean, integer) IS
'Internal: a string field of args (NULL when absent unless required), at most max_length characters without control characters.';

-- An identifier field: an agent, sensor, fan, group, profile or rule name.
CREATE FUNCTION pankha.api_id(args jsonb, field text, required boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    t text := pankha.api_text(args, field, required, 1000);
BEGIN
    IF t IS NOT NULL AND NOT pankha.valid_id(t) THEN
        PERFORM pankha.api_raise('22023', field, format('%s: must be 1 to 64 bytes without control characters', field));
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_id(jsonb, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_id(jsonb, text, boolean) IS
'Internal: an identifier field of args (1 to 64 bytes without control characters).';

CREATE FUNCTION pankha.api_enum(args jsonb, field text, allowed text[], required boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    t text := pankha.api_text(args, field, required, 64);
BEGIN
    IF t IS NOT NULL AND t <> ALL (allowed) THEN
        PERFORM pankha.api_raise('22023', field,
                                 format('%s: must be one of %s', field, array_to_string(allowed, ', ')));
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_enum(jsonb, text, text[], boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_enum(jsonb, text, text[], boolean) IS
'Internal: a string field of args that must be one of the allowed words.';

-- A number field (a JSON number, or a string holding one, as from a query
-- string) between lo and hi.
CREATE FUNCTION pankha.api_number(args jsonb, field text, lo numeric, hi numeric,
                                  required boolean DEFAULT false)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    v jsonb := args -> field;
    n numeric;
BEGIN
    IF NOT pankha.api_has(args, field) THEN
        IF required THEN
            PERFORM pankha.api_raise('22023', field, format('%s: is required', field));
        END IF;
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) = 'number' THEN
        n := v::numeric;
    ELSIF jsonb_typeof(v) = 'string' AND v #>> '{}' ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'
          AND length(v #>> '{}') <= 40 THEN
        n := (v #>> '{}')::numeric;
    ELSE
        PERFORM pankha.api_raise('22023', field, format('%s: must be a number', field));
    END IF;
    IF n < lo OR n > hi THEN
        PERFORM pankha.api_raise('22003', field, format('%s: must be between %s and %s', field, lo, hi),
                                 format('%s was given.', n));
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_number(jsonb, text, numeric, numeric, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_number(jsonb, text, numeric, numeric, boolean) IS
'Internal: a number field of args (a JSON number or a numeric string) within [lo, hi]; numeric_value_out_of_range (22003) outside.';

CREATE FUNCTION pankha.api_int(args jsonb, field text, fallback bigint, lo bigint, hi bigint,
                               required boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n numeric := pankha.api_number(args, field, lo, hi, required);
BEGIN
    IF n IS NULL THEN
        RETURN fallback;
    END IF;
    IF n <> trunc(n) THEN
        PERFORM pankha.api_raise('22023', field, format('%s: must be a whole number', field));
    END IF;
    RETURN n::bigint;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_int(jsonb, text, bigint, bigint, bigint, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_int(jsonb, text, bigint, bigint, bigint, boolean) IS
'Internal: a whole-number field of args within [lo, hi], or fallback when absent.';

CREATE FUNCTION pankha.api_bool(args jsonb, field text, fallback boolean DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    v jsonb := args -> field;
BEGIN
    IF NOT pankha.api_has(args, field) THEN
        RETURN fallback;
    END IF;
    IF jsonb_typeof(v) = 'boolean' THEN
        RETURN v::boolean;
    ELSIF v #>> '{}' IN ('true', 'false') THEN
        RETURN (v #>> '{}')::boolean;
    END IF;
    PERFORM pankha.api_raise('22023', field, format('%s: must be true or false', field));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_bool(jsonb, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_bool(jsonb, text, boolean) IS
'Internal: a boolean field of args (true, false, or those words as strings).';

-- A time field: an ISO 8601 string or epoch milliseconds, as on the wire.
CREATE FUNCTION pankha.api_time(args jsonb, field text, fallback timestamptz DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    v jsonb := args -> field;
    t timestamptz;
BEGIN
    IF NOT pankha.api_has(args, field) THEN
        RETURN fallback;
    END IF;
    BEGIN
        IF jsonb_typeof(v) = 'number' THEN
            t := to_timestamp(v::numeric / 1000);
        ELSIF jsonb_typeof(v) = 'string' AND length(v #>> '{}') <= 64 THEN
            t := (v #>> '{}')::timestamptz;
        END IF;
    EXCEPTION WHEN data_exception THEN
        t := NULL;
    END;
    IF t IS NULL OR NOT isfinite(t) THEN
        PERFORM pankha.api_raise('22007', field,
                                 format('%s: must be an ISO 8601 time or epoch milliseconds', field));
    END IF;
    RETURN t;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_time(jsonb, text, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_time(jsonb, text, timestamptz) IS
'Internal: a time field of args, ISO 8601 text or epoch milliseconds; invalid_datetime_format (22007) otherwise.';

CREATE FUNCTION pankha.api_uuid(args jsonb, field text, required boolean DEFAULT true)
RETURNS uuid
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    t text := pankha.api_text(args, field, required, 64);
BEGIN
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    IF t !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
        PERFORM pankha.api_raise('22023', field, format('%s: must be a UUID', field));
    END IF;
    RETURN t::uuid;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_uuid(jsonb, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_uuid(jsonb, text, boolean) IS
'Internal: a UUID field of args.';

CREATE FUNCTION pankha.api_page_size(args jsonb, max_size integer DEFAULT 1000) RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pankha
RETURN pankha.api_int(args, 'page_size', least(100, max_size), 1, max_size);
REVOKE ALL ON FUNCTION pankha.api_page_size(jsonb, integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_page_size(jsonb, integer) IS
'Internal: the page_size of a listing, 1 to max_size (100 when absent).';

-- Keyset cursors are opaque to clients: the sort key of the last row of a
-- page, as a JSON array of strings in base64url.
CREATE FUNCTION pankha.api_cursor_out(key text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN translate(encode(convert_to(to_jsonb(key)::text, 'UTF8'), 'base64'), E'+/=\n', '-_');
REVOKE ALL ON FUNCTION pankha.api_cursor_out(text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_cursor_out(text[]) IS
'Internal: the cursor text for a page''s last sort key.';

-- The sort key a cursor field carries (NULL when absent); n parts, each
-- checked by casting to its type (a cast that fails is a bad cursor).
CREATE FUNCTION pankha.api_cursor_in(args jsonb, types text[]) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    t text := pankha.api_text(args, 'cursor', false, 1000);
    b64 text;
    j jsonb;
    key text[];
    ok boolean;
BEGIN
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    b64 := translate(t, '-_', '+/');
    b64 := b64 || repeat('=', (4 - length(b64) % 4) % 4);
    BEGIN
        j := convert_from(decode(b64, 'base64'), 'UTF8')::jsonb;
        IF jsonb_typeof(j) = 'array' AND jsonb_array_length(j) = cardinality(types)
           AND NOT jsonb_path_exists(j, '$[*] ? (@.type() != "string")') THEN
            key := ARRAY(SELECT jsonb_array_elements_text(j));
            FOR i IN 1 .. cardinality(types) LOOP
                EXECUTE format('SELECT %L::%s IS NOT NULL', key[i], types[i]) INTO ok;
            END LOOP;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        key := NULL;
    END;
    IF key IS NULL THEN
        PERFORM pankha.api_raise('22023', 'cursor', 'cursor: is not a cursor this listing returned');
    END IF;
    RETURN key;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_cursor_in(jsonb, text[]) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_cursor_in(jsonb, text[]) IS
'Internal: the sort key in the cursor field of args (NULL when absent), each part checked against its type; invalid_parameter_value for anything else.';

-- A page of a listing: {"items": [...], "next_cursor": text or null}.  The
-- caller fetched one row more than the page size to know whether there is
-- a next page, and passes each row's sort key.
CREATE FUNCTION pankha.api_page(items jsonb[], keys text[][], page_size integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pankha
RETURN jsonb_build_object(
    'items', coalesce(to_jsonb(items[1:page_size]), '[]'),
    'next_cursor', CASE WHEN coalesce(cardinality(items), 0) > page_size
                        THEN pankha.api_cursor_out(ARRAY(SELECT unnest(keys[page_size:page_size]))) END);
REVOKE ALL ON FUNCTION pankha.api_page(jsonb[], text[], integer) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_page(jsonb[], text[], integer) IS
'Internal: the listing object for up to page_size + 1 fetched rows and their sort keys.';

-- Raises 404 material: the agent must exist.
CREATE FUNCTION pankha.api_agent_id(args jsonb, field text DEFAULT 'agent_id', required boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    id text := pankha.api_id(args, field, required);
BEGIN
    IF id IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agents a WHERE a.agent_id = id) THEN
        PERFORM pankha.api_raise('42704', field, format('%s: agent "%s" is not registered', field, id));
    END IF;
    RETURN id;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_agent_id(jsonb, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_agent_id(jsonb, text, boolean) IS
'Internal: an agent id field of args that names a registered agent; undefined_object (42704) otherwise.';

CREATE FUNCTION pankha.api_group_name(args jsonb, field text, required boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    name text := pankha.api_id(args, field, required);
BEGIN
    IF name IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = name) THEN
        PERFORM pankha.api_raise('42704', field, format('%s: group "%s" does not exist', field, name));
    END IF;
    RETURN name;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_group_name(jsonb, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_group_name(jsonb, text, boolean) IS
'Internal: a group name field of args that names an existing group; undefined_object (42704) otherwise.';

-- An interval given in seconds.
CREATE FUNCTION pankha.api_seconds(args jsonb, field text, fallback interval, lo numeric, hi numeric)
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pankha
RETURN coalesce(pankha.api_number(args, field, lo, hi) * interval '1 second', fallback);
REVOKE ALL ON FUNCTION pankha.api_seconds(jsonb, text, interval, numeric, numeric) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_seconds(jsonb, text, interval, numeric, numeric) IS
'Internal: a duration field of args in seconds, within [lo, hi], or fallback when absent.';

-- Passes through an error raised by an existing function, adding the field
-- it is about (the existing functions name it in their message only).
CREATE FUNCTION pankha.api_reraise(field text, code text, message text, detail text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    PERFORM pankha.api_raise(code, field,
                             CASE WHEN field IS NULL OR starts_with(message, field || ':') THEN message
                                  WHEN starts_with(message, field || ' ') THEN field || ':' || substr(message, length(field) + 1)
                                  ELSE field || ': ' || message END,
                             nullif(detail, ''));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_reraise(text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_reraise(text, text, text, text) IS
'Internal: raises again an error caught from another function, prefixed with and carrying the field it is about.';

-- ---------------------------------------------------------------------
-- Fleet and agents
-- ---------------------------------------------------------------------

-- What an agent's newest frame says: the hottest sensor, a fan summary,
-- and every value.  Without a SET clause of its own (every name in it is
-- qualified) the planner inlines it into the fleet query, which is planned
-- once instead of once per agent.
CREATE FUNCTION pankha.api_frame_summary(agent_id text, ts timestamptz, received_at timestamptz,
                                         payload bytea)
RETURNS TABLE (hottest jsonb, fan_summary jsonb, latest jsonb)
LANGUAGE sql STABLE ROWS 1
AS $$
-- One pass over the temperatures and one over the fans, each joined to
-- the catalog once.
SELECT t.hottest, f.summary,
       jsonb_build_object('ts', ts, 'received_at', received_at, 'seq', pankha.decode_seq(payload),
                          'temperatures', coalesce(t.temperatures, '{}'), 'fans', coalesce(f.fans, '{}'),
                          'health', (SELECT jsonb_strip_nulls(to_jsonb(h)) FROM pankha.decode_health(payload) h))
FROM (SELECT jsonb_object_agg(s.sensor_id, d.temperature) AS temperatures,
             (array_agg(jsonb_build_object('sensor_id', s.sensor_id, 'temperature', d.temperature)
                        ORDER BY d.temperature DESC NULLS LAST, s.sensor_id))[1] AS hottest
      FROM pankha.decode_temperatures(payload) d
      JOIN pankha.sensors s ON s.agent_id = api_frame_summary.agent_id AND s.slot = d.slot) t,
     (SELECT jsonb_object_agg(c.fan_id, jsonb_strip_nulls(jsonb_build_object(
                 'rpm', d.rpm, 'speed', d.speed, 'target_speed', d.target_speed, 'status', d.status)))
                 FILTER (WHERE c.fan_id IS NOT NULL) AS fans,
             jsonb_build_object('min_rpm', min(d.rpm), 'max_rpm', max(d.rpm),
                                'stalled', coalesce(bool_or(d.status = 'stalled' OR (d.rpm = 0 AND d.speed > 0)), false),
                                'stalled_fans', count(*) FILTER (WHERE d.status = 'stalled' OR (d.rpm = 0 AND d.speed > 0)))
                 AS summary
      FROM pankha.decode_fans(payload) d
      LEFT JOIN pankha.fans c ON c.agent_id = api_frame_summary.agent_id AND c.slot = d.slot) f
WHERE payload IS NOT NULL
$$;
REVOKE ALL ON FUNCTION pankha.api_frame_summary(text, timestamptz, timestamptz, bytea) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_frame_summary(text, timestamptz, timestamptz, bytea) IS
'Internal: for one frame of an agent, the hottest sensor {sensor_id, temperature}, the fans {min_rpm, max_rpm, stalled, stalled_fans} (stalled: status stalled or 0 rpm while driven) and every value {ts, received_at, seq, temperatures, fans, health}.';

CREATE FUNCTION pankha.api_fleet(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    want_group text;
    want_status text;
    q text;
    pattern text;
    after text[];
    ids text[];
    total bigint;
    items jsonb;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read the fleet');
    n := pankha.api_page_size(a);
    want_group := pankha.api_id(a, 'group');
    want_status := pankha.api_enum(a, 'status', '{online,offline}');
    q := pankha.api_text(a, 'q', false, 64);
    after := pankha.api_cursor_in(a, '{text}');
    pattern := '%' || replace(replace(replace(q, '\', '\\'), '%', '\%'), '_', '\_') || '%';

    SELECT count(*) INTO total
    FROM pankha.agents g
    LEFT JOIN pankha.agent_group_members m ON m.agent_id = g.agent_id
    WHERE (want_group IS NULL OR m.group_name = want_group)
      AND (want_status IS NULL OR g.status = want_status)
      AND (q IS NULL OR g.agent_id ILIKE pattern OR g.name ILIKE pattern OR g.hostname ILIKE pattern);
    ids := ARRAY(SELECT g.agent_id
                 FROM pankha.agents g
                 LEFT JOIN pankha.agent_group_members m ON m.agent_id = g.agent_id
                 WHERE (want_group IS NULL OR m.group_name = want_group)
                   AND (want_status IS NULL OR g.status = want_status)
                   AND (q IS NULL OR g.agent_id ILIKE pattern OR g.name ILIKE pattern OR g.hostname ILIKE pattern)
                   AND (after IS NULL OR g.agent_id > after[1])
                 ORDER BY g.agent_id LIMIT n + 1);

    -- Built as json text and parsed once: jsonb_build_object would copy
    -- every nested value into each enclosing one (a third of the time).
    SELECT json_agg(json_build_object(
               'agent_id', g.agent_id, 'name', g.name, 'hostname', g.hostname,
               'group', m.group_name, 'status', g.status,
               'last_seen', greatest(g.last_seen, l.last_seen),
               'sensor_count', (SELECT count(*) FROM pankha.sensors s WHERE s.agent_id = g.agent_id),
               'fan_count', (SELECT count(*) FROM pankha.fans f WHERE f.agent_id = g.agent_id),
               'hottest', v.hottest, 'fan_summary', v.fan_summary,
               'active_alerts', coalesce(al.n, 0), 'latest', v.latest)
           ORDER BY u.ord)::jsonb
    INTO items
    FROM unnest(ids[1:n]) WITH ORDINALITY AS u(agent_id, ord)
    JOIN pankha.agents g ON g.agent_id = u.agent_id
    LEFT JOIN pankha.agent_group_members m ON m.agent_id = g.agent_id
    -- Hash joins: a filter "= ANY (ids)" would compare every id of the
    -- page with every agent the liveness table or the firing alerts hold.
    LEFT JOIN pankha.agent_liveness() l ON l.agent_id = g.agent_id
    LEFT JOIN (SELECT x.agent_id, count(*) AS n FROM pankha.alerts x
               WHERE x.state = 'firing' GROUP BY x.agent_id) al
           ON al.agent_id = g.agent_id
    -- raw or compressed (an agent silent since before the cold age)
    LEFT JOIN LATERAL pankha.newest_frame(g.agent_id) r ON true
    LEFT JOIN LATERAL pankha.api_frame_summary(g.agent_id, r.ts, r.received_at, r.payload) v ON true;

    RETURN jsonb_build_object(
        'items', coalesce(items, '[]'),
        'total', coalesce(total, 0),
        'next_cursor', CASE WHEN cardinality(ids) > n THEN pankha.api_cursor_out(ARRAY[ids[n]]) END);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_fleet(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_fleet(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_fleet(text, text, jsonb) IS
'GET /api/v1/fleet (viewer): a page of agents by agent_id with name, hostname, group, status, last_seen, sensor_count, fan_count, hottest, fan_summary, active_alerts and latest values; args page_size, cursor, group, status (online, offline), q (text in agent_id, name or hostname).  total counts the agents matching the filters.';

-- The effective settings of an agent, each with where it comes from.
CREATE FUNCTION pankha.api_settings_sources(agent_id text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'key', d.key, 'value', coalesce(s.value, d.default_value),
           'source', coalesce(s.scope_kind, 'default'), 'scope', s.scope,
           'default', d.default_value, 'updated_at', s.updated_at, 'updated_by', s.updated_by)
       ORDER BY d.key), '[]')
FROM pankha.setting_definitions d
LEFT JOIN LATERAL (
    SELECT x.* FROM pankha.settings x
    LEFT JOIN pankha.agent_group_members m ON m.agent_id = api_settings_sources.agent_id
    WHERE x.key = d.key
      AND (x.scope_kind = 'global'
           OR (x.scope_kind = 'group' AND x.group_name = m.group_name)
           OR (x.scope_kind = 'agent' AND x.agent_id = api_settings_sources.agent_id))
    ORDER BY CASE x.scope_kind WHEN 'agent' THEN 0 WHEN 'group' THEN 1 ELSE 2 END
    LIMIT 1) s ON true
$$;
REVOKE ALL ON FUNCTION pankha.api_settings_sources(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_settings_sources(text) IS
'Internal: every setting of an agent as {key, value, source (default, global, group or agent), scope, default, updated_at, updated_by}, resolved as pankha.effective_settings() does.';

CREATE FUNCTION pankha.api_agent(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    nconn integer;
    result jsonb;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read agents');
    id := pankha.api_agent_id(a);
    nconn := pankha.api_int(a, 'connections', 20, 0, 100);
    SELECT jsonb_build_object(
        'agent_id', g.agent_id, 'name', g.name, 'hostname', g.hostname,
        'capabilities', g.capabilities, 'registered_at', g.registered_at,
        'group', m.group_name, 'status', g.status,
        'last_seen', greatest(g.last_seen, (SELECT l.last_seen FROM pankha.agent_liveness() l
                                            WHERE l.agent_id = g.agent_id)),
        'status_report', (SELECT jsonb_build_object('received_at', r.received_at, 'report', r.report)
                          FROM pankha.agent_reports r WHERE r.agent_id = g.agent_id),
        'sensors', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                 'sensor_id', s.sensor_id, 'label', s.label, 'type', s.kind,
                                 'max_temp', s.max_temp, 'crit_temp', s.crit_temp,
                                 'first_seen', s.first_seen,
                                 'temperature', v.latest -> 'temperatures' -> s.sensor_id)
                             ORDER BY s.sensor_id)
                             FROM pankha.sensors s WHERE s.agent_id = g.agent_id), '[]'),
        'fans', coalesce((SELECT jsonb_agg(jsonb_build_object(
                              'fan_id', f.fan_id, 'label', f.label,
                              'min_speed', f.min_speed, 'max_speed', f.max_speed,
                              'emergency_temp', f.emergency_temp, 'first_seen', f.first_seen,
                              'profile', (SELECT jsonb_build_object('name', p.profile_name,
                                                                    'sensor_id', p.sensor_id,
                                                                    'assigned_at', p.assigned_at)
                                          FROM pankha.fan_profile_assignments p
                                          WHERE p.agent_id = f.agent_id AND p.fan_id = f.fan_id),
                              'reading', v.latest -> 'fans' -> f.fan_id)
                          ORDER BY f.fan_id)
                          FROM pankha.fans f WHERE f.agent_id = g.agent_id), '[]'),
        'latest', v.latest,
        'active_alerts', (SELECT count(*) FROM pankha.alerts x
                          WHERE x.agent_id = g.agent_id AND x.state = 'firing'),
        'settings', pankha.api_settings_sources(g.agent_id),
        'connections', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                     'connection_id', c.connection_id, 'bridge_id', c.bridge_id,
                                     'remote_addr', c.remote_addr, 'connected_at', c.connected_at,
                                     'closed_at', c.closed_at, 'close_code', c.close_code,
                                     'close_reason', c.close_reason, 'frames_in', c.frames_in,
                                     'bytes_in', c.bytes_in, 'frames_out', c.frames_out,
                                     'bytes_out', c.bytes_out)
                                 ORDER BY c.connected_at DESC, c.connection_id DESC)
                                 FROM (SELECT * FROM pankha.connections c
                                       WHERE c.agent_id = g.agent_id
                                       ORDER BY c.connected_at DESC, c.connection_id DESC
                                       LIMIT nconn) c), '[]'),
        'connection_stats', (SELECT to_jsonb(cs) - 'agent_id' FROM pankha.connection_stats cs
                             WHERE cs.agent_id = g.agent_id))
    INTO result
    FROM pankha.agents g
    LEFT JOIN pankha.agent_group_members m ON m.agent_id = g.agent_id
    -- raw or compressed (an agent silent since before the cold age)
    LEFT JOIN LATERAL pankha.newest_frame(g.agent_id) r ON true
    LEFT JOIN LATERAL pankha.api_frame_summary(g.agent_id, r.ts, r.received_at, r.payload) v ON true
    WHERE g.agent_id = id;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_agent(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_agent(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_agent(text, text, jsonb) IS
'GET /api/v1/agents/{agent_id} (viewer): the agent, its sensors (label, type, max/crit, latest temperature) and fans (limits, the profile driving each with its sensor, latest reading), latest values, effective settings with their source (default, global, group, agent), and its newest connections (args connections, 0 to 100, default 20) with their statistics.';

-- History of one or more series of an agent, with the number of points per
-- series bounded: a span that would give more buckets than max_points is
-- read at a coarser resolution.
CREATE FUNCTION pankha.api_history(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    lim jsonb := pankha.api_limits();
    id text;
    names text[];
    from_ts timestamptz;
    to_ts timestamptz;
    res interval;
    max_points integer;
    span numeric;
    step numeric;
    one text;
    result jsonb := '{}';
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read history');
    id := pankha.api_agent_id(a);
    IF jsonb_typeof(a -> 'series') = 'array' THEN
        IF jsonb_array_length(a -> 'series') > (lim ->> 'history_series_max')::integer THEN
            PERFORM pankha.api_raise('54000', 'series',
                                     format('series: at most %s series per request', lim ->> 'history_series_max'));
        END IF;
        IF jsonb_path_exists(a -> 'series', '$[*] ? (@.type() != "string")') THEN
            PERFORM pankha.api_raise('22023', 'series', 'series: must be a string or an array of strings');
        END IF;
        names := ARRAY(SELECT jsonb_array_elements_text(a -> 'series'));
    ELSIF pankha.api_has(a, 'series') THEN
        names := regexp_split_to_array(btrim(pankha.api_text(a, 'series', true, 64 * 33)), '\s*,\s*');
        IF cardinality(names) > (lim ->> 'history_series_max')::integer THEN
            PERFORM pankha.api_raise('54000', 'series',
                                     format('series: at most %s series per request', lim ->> 'history_series_max'));
        END IF;
    ELSE
        PERFORM pankha.api_raise('22023', 'series', 'series: is required (sensor ids, fan ids or health metrics)');
    END IF;
    to_ts := pankha.api_time(a, 'to', now());
    from_ts := pankha.api_time(a, 'from', to_ts - interval '1 hour');
    IF from_ts >= to_ts THEN
        PERFORM pankha.api_raise('22023', 'from', 'from: must be before to');
    END IF;
    max_points := pankha.api_int(a, 'max_points', (lim ->> 'history_points_default')::integer,
                                 1, (lim ->> 'history_points_max')::integer);
    res := pankha.api_seconds(a, 'resolution', NULL, 1, 366 * 86400);
    span := extract(epoch FROM to_ts - from_ts);
    -- Without a resolution, raw frames come every update_interval seconds.
    IF span / extract(epoch FROM coalesce(res, make_interval(secs => pankha.update_interval(id)))) > max_points THEN
        step := ceil(span / max_points);
        step := CASE WHEN step < 60 THEN step WHEN step < 3600 THEN ceil(step / 60) * 60
                     ELSE ceil(step / 3600) * 3600 END;
        res := make_interval(secs => step::double precision);
    ELSIF res IS NOT NULL AND extract(epoch FROM res) >= 60 THEN
        -- history() wants whole minutes or hours there
        step := extract(epoch FROM res);
        step := CASE WHEN step < 3600 THEN ceil(step / 60) * 60 ELSE ceil(step / 3600) * 3600 END;
        res := make_interval(secs => step::double precision);
    END IF;
    FOREACH one IN ARRAY names LOOP
        BEGIN
            result := result || jsonb_build_object(one, coalesce(
                (SELECT jsonb_agg(jsonb_build_object('t', h.bucket, 'min', h.min, 'max', h.max,
                                                     'avg', h.avg, 'samples', h.samples) ORDER BY h.bucket)
                 FROM (SELECT * FROM pankha.history(id, one, from_ts, to_ts, res) x
                       ORDER BY x.bucket LIMIT max_points) h), '[]'));
        EXCEPTION WHEN undefined_object OR invalid_parameter_value THEN
            DECLARE
                code text;
                msg text;
                det text;
            BEGIN
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
                PERFORM pankha.api_reraise('series', code, msg, det);
            END;
        END;
    END LOOP;
    RETURN jsonb_build_object('agent_id', id, 'from', from_ts, 'to', to_ts,
                              'resolution_seconds', extract(epoch FROM res)::double precision, 'series', result);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_history(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_history(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_history(text, text, jsonb) IS
'GET /api/v1/agents/{agent_id}/history (viewer): series (a string, comma-separated, or an array of up to 32 sensor ids, fan ids or health metrics), from and to (default the last hour), resolution in seconds, max_points per series (default 500, at most 5000; a coarser resolution is chosen when the span would give more).  Answers {agent_id, from, to, resolution_seconds, series: {id: [{t, min, max, avg, samples}]}}.';

-- ---------------------------------------------------------------------
-- Commands
-- ---------------------------------------------------------------------

CREATE INDEX commands_created_at_idx ON pankha.commands (created_at);

CREATE FUNCTION pankha.api_command_json(c pankha.commands) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN jsonb_build_object(
    'command_id', c.command_id, 'agent_id', c.agent_id, 'command_type', c.command_type,
    'parameters', c.parameters, 'priority', c.priority, 'status', c.status,
    'status_reason', c.status_reason, 'created_at', c.created_at, 'expires_at', c.expires_at,
    'sent_at', c.sent_at, 'acked_at', c.acked_at, 'attempts', c.attempts,
    'max_attempts', c.max_attempts, 'success', c.success, 'error', c.error,
    'issued_by', c.issued_by,
    'latency_ms', round(extract(epoch FROM c.acked_at - c.created_at) * 1000, 1));
REVOKE ALL ON FUNCTION pankha.api_command_json(pankha.commands) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_command_json(pankha.commands) IS
'Internal: a command as the API shows it; latency_ms is from issue to the agent''s acknowledgement.';

CREATE FUNCTION pankha.api_commands(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    id text;
    want_status text;
    want_type text;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read commands');
    n := pankha.api_page_size(a);
    id := pankha.api_agent_id(a, 'agent_id', false);
    want_status := pankha.api_enum(a, 'status', '{queued,sent,acked,failed,expired,dead}');
    want_type := pankha.api_id(a, 'command_type');
    after := pankha.api_cursor_in(a, '{timestamptz,uuid}');
    SELECT array_agg(pankha.api_command_json(c) ORDER BY c.created_at DESC, c.command_id DESC),
           array_agg(ARRAY[c.created_at::text, c.command_id::text] ORDER BY c.created_at DESC, c.command_id DESC)
    INTO items, keys
    FROM (SELECT * FROM pankha.commands c
          WHERE (id IS NULL OR c.agent_id = id)
            AND (want_status IS NULL OR c.status = want_status)
            AND (want_type IS NULL OR c.command_type = want_type)
            AND (after IS NULL OR (c.created_at, c.command_id) < (after[1]::timestamptz, after[2]::uuid))
          ORDER BY c.created_at DESC, c.command_id DESC
          LIMIT n + 1) c;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_commands(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_commands(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_commands(text, text, jsonb) IS
'GET /api/v1/commands and /api/v1/agents/{agent_id}/commands (viewer): commands newest first; args agent_id, status, command_type, page_size, cursor.';

CREATE FUNCTION pankha.api_command(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id uuid;
    c pankha.commands;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read commands');
    id := pankha.api_uuid(a, 'command_id');
    SELECT * INTO c FROM pankha.commands x WHERE x.command_id = id;
    IF NOT FOUND THEN
        PERFORM pankha.api_raise('42704', 'command_id', format('command_id: command %s does not exist', id),
                                 'Finished commands are kept for 30 days; the audit log keeps their story longer.');
    END IF;
    RETURN pankha.api_command_json(c) || jsonb_build_object('events', coalesce(
        (SELECT jsonb_agg(jsonb_build_object('at', l.logged_at, 'event', l.event,
                                             'ui_user', l.ui_user, 'db_role', l.db_role,
                                             'details', l.details - 'command_id')
                          ORDER BY l.logged_at, l.audit_id)
         FROM pankha.audit_log l
         WHERE l.agent_id = c.agent_id AND l.logged_at >= c.created_at
           AND l.event LIKE 'command.%' AND l.details ->> 'command_id' = c.command_id::text), '[]'));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_command(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_command(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_command(text, text, jsonb) IS
'GET /api/v1/commands/{command_id} (viewer): one command''s whole life: status and reason, created, sent (last delivery), acked or failed with the agent''s error, expiry, attempts, who issued it, latency_ms from issue to ack, and its audit events (issued, acked, failed, expired, dead) in order.';

CREATE FUNCTION pankha.api_send_command(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    ctype text;
    params jsonb;
    cid uuid;
    c pankha.commands;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'send commands');
    id := pankha.api_agent_id(a);
    ctype := pankha.api_id(a, 'command_type', true);
    params := coalesce(a -> 'parameters', '{}');
    IF jsonb_typeof(params) <> 'object' THEN
        PERFORM pankha.api_raise('22023', 'parameters', format('parameters: must be a JSON object, not %s', jsonb_typeof(params)));
    END IF;
    BEGIN
        cid := pankha.send_command(id, ctype, params,
                                   coalesce(pankha.api_enum(a, 'priority', '{high,normal,low}'), 'normal'),
                                   pankha.api_seconds(a, 'ttl_seconds', interval '5 minutes', 1, 360 * 86400),
                                   ui_user,
                                   pankha.api_int(a, 'max_attempts', 5, 1, 100)::integer);
    EXCEPTION WHEN invalid_parameter_value OR numeric_value_out_of_range OR undefined_object
                   OR program_limit_exceeded THEN
        DECLARE
            code text;
            msg text;
            det text;
            col text;
        BEGIN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                    col = COLUMN_NAME;
            IF col <> '' THEN
                RAISE;
            END IF;
            PERFORM pankha.api_reraise(CASE WHEN msg LIKE 'parameters%' THEN NULL ELSE 'parameters' END,
                                       code, msg, det);
        END;
    END;
    SELECT * INTO c FROM pankha.commands x WHERE x.command_id = cid;
    RETURN pankha.api_command_json(c);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_send_command(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_send_command(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_send_command(text, text, jsonb) IS
'POST /api/v1/agents/{agent_id}/commands (operator): queues command_type with parameters (priority, ttl_seconds default 300 and at most 360 days as pankha.send_command takes, max_attempts) and answers the command as pankha.api_command() shows it.';

-- ---------------------------------------------------------------------
-- Fan profiles, fan limits, emergency stop
-- ---------------------------------------------------------------------

CREATE FUNCTION pankha.api_profile_json(p pankha.fan_profiles) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN jsonb_build_object(
    'name', p.profile_name, 'points', p.points, 'hysteresis', p.hysteresis, 'step', p.step,
    'description', p.description, 'created_at', p.created_at, 'updated_at', p.updated_at,
    'fans', (SELECT count(*) FROM pankha.fan_profile_assignments x WHERE x.profile_name = p.profile_name));
REVOKE ALL ON FUNCTION pankha.api_profile_json(pankha.fan_profiles) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_profile_json(pankha.fan_profiles) IS
'Internal: a fan profile as the API shows it, with the number of fans it drives.';

CREATE FUNCTION pankha.api_profiles(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read fan profiles');
    n := pankha.api_page_size(a);
    after := pankha.api_cursor_in(a, '{text}');
    SELECT array_agg(pankha.api_profile_json(p) ORDER BY p.profile_name),
           array_agg(ARRAY[p.profile_name] ORDER BY p.profile_name)
    INTO items, keys
    FROM (SELECT * FROM pankha.fan_profiles p
          WHERE after IS NULL OR p.profile_name > after[1]
          ORDER BY p.profile_name LIMIT n + 1) p;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profiles(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profiles(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profiles(text, text, jsonb) IS
'GET /api/v1/profiles (viewer): fan profiles by name with their curve, tuning and the number of fans each drives; args page_size, cursor.';

-- Calls a profile or limit function and passes its error on with the
-- field it concerns; for the parts shared by create and update.
CREATE FUNCTION pankha.api_profile_field(message text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN message LIKE 'points%' THEN 'points' WHEN message LIKE 'hysteresis%' THEN 'hysteresis'
            WHEN message LIKE 'step%' THEN 'step' WHEN message LIKE '%profile name%' THEN 'name'
            WHEN message LIKE 'profile%' THEN 'name' END;
REVOKE ALL ON FUNCTION pankha.api_profile_field(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_profile_field(text) IS
'Internal: the API field an error of the profile functions is about.';

CREATE FUNCTION pankha.api_profile_create(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
    p pankha.fan_profiles;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage fan profiles');
    name := pankha.api_id(a, 'name', true);
    IF NOT pankha.api_has(a, 'points') THEN
        PERFORM pankha.api_raise('22023', 'points', 'points: is required');
    END IF;
    BEGIN
        PERFORM pankha.create_profile(name, a -> 'points',
                                      coalesce(pankha.api_number(a, 'hysteresis', -1e6, 1e6)::real, 2),
                                      coalesce(pankha.api_number(a, 'step', -1e6, 1e6)::real, 5),
                                      pankha.api_text(a, 'description', false, 1000), ui_user);
    EXCEPTION WHEN invalid_parameter_value OR numeric_value_out_of_range OR unique_violation THEN
        DECLARE
            code text;
            msg text;
            det text;
            col text;
        BEGIN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                    col = COLUMN_NAME;
            IF col <> '' THEN
                RAISE;
            END IF;
            PERFORM pankha.api_reraise(pankha.api_profile_field(msg), code, msg, det);
        END;
    END;
    SELECT * INTO p FROM pankha.fan_profiles x WHERE x.profile_name = name;
    RETURN pankha.api_profile_json(p);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profile_create(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profile_create(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profile_create(text, text, jsonb) IS
'POST /api/v1/profiles (admin): creates a profile from name, points ([[temperature, speed], ...]), hysteresis (default 2), step (default 5) and description; answers the profile.';

CREATE FUNCTION pankha.api_profile_update(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
    p pankha.fan_profiles;
    queued integer := 0;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage fan profiles');
    name := pankha.api_id(a, 'name', true);
    SELECT * INTO p FROM pankha.fan_profiles x WHERE x.profile_name = name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pankha.api_raise('42704', 'name', format('name: profile "%s" does not exist', name));
    END IF;
    IF pankha.api_has(a, 'points') OR pankha.api_has(a, 'hysteresis') OR pankha.api_has(a, 'step') THEN
        BEGIN
            queued := pankha.update_profile(name, coalesce(a -> 'points', p.points),
                                            coalesce(pankha.api_number(a, 'hysteresis', -1e6, 1e6)::real, p.hysteresis),
                                            coalesce(pankha.api_number(a, 'step', -1e6, 1e6)::real, p.step),
                                            ui_user);
        EXCEPTION WHEN invalid_parameter_value OR numeric_value_out_of_range THEN
            DECLARE
                code text;
                msg text;
                det text;
                col text;
            BEGIN
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                        col = COLUMN_NAME;
                IF col <> '' THEN
                    RAISE;
                END IF;
                PERFORM pankha.api_reraise(pankha.api_profile_field(msg), code, msg, det);
            END;
        END;
    END IF;
    IF a ? 'description' THEN
        UPDATE pankha.fan_profiles x SET description = pankha.api_text(a, 'description', false, 1000),
                                         updated_at = now()
        WHERE x.profile_name = name;
    END IF;
    SELECT * INTO p FROM pankha.fan_profiles x WHERE x.profile_name = name;
    RETURN jsonb_build_object('profile', pankha.api_profile_json(p), 'commands_queued', queued);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profile_update(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profile_update(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profile_update(text, text, jsonb) IS
'PATCH /api/v1/profiles/{name} (admin): changes the fields given (points, hysteresis, step, description; the others stay) and queues apply_profile to every fan the profile drives; answers {profile, commands_queued}.';

CREATE FUNCTION pankha.api_profile_delete(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage fan profiles');
    name := pankha.api_id(a, 'name', true);
    BEGIN
        PERFORM pankha.delete_profile(name, ui_user);
    EXCEPTION WHEN undefined_object OR foreign_key_violation THEN
        DECLARE
            code text;
            msg text;
            det text;
        BEGIN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
            PERFORM pankha.api_reraise('name', code, msg, det);
        END;
    END;
    RETURN jsonb_build_object('name', name, 'deleted', true);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profile_delete(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profile_delete(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profile_delete(text, text, jsonb) IS
'DELETE /api/v1/profiles/{name} (admin): deletes a profile no fan uses (foreign_key_violation, 23503, while one does).';

-- The field an error of a fan function is about, from its message.
CREATE FUNCTION pankha.api_fan_field(message text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN message LIKE 'sensor %' OR message LIKE '%sensor_id%' THEN 'sensor_id'
            WHEN message LIKE 'profile %' OR message LIKE '%.profile%' THEN 'profile'
            WHEN message LIKE '%has no profile%' OR message LIKE 'fan %' OR message LIKE '%fan_id%' THEN 'fan_id'
            WHEN message LIKE '%speed limits%' THEN 'min_speed'
            WHEN message LIKE '%emergency_temp%' THEN 'emergency_temp'
            WHEN message LIKE 'agent %' THEN 'agent_id' END;
REVOKE ALL ON FUNCTION pankha.api_fan_field(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_fan_field(text) IS
'Internal: the API field an error of the fan and assignment functions is about.';

CREATE FUNCTION pankha.api_profile_assign(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    fan text;
    cid uuid;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'assign fan profiles');
    id := pankha.api_agent_id(a);
    fan := pankha.api_id(a, 'fan_id', true);
    BEGIN
        IF pankha.api_bool(a, 'unassign', false) THEN
            cid := pankha.unassign_profile(id, fan, ui_user);
        ELSE
            cid := pankha.assign_profile(id, fan, pankha.api_id(a, 'profile', true),
                                         pankha.api_id(a, 'sensor_id', true), ui_user);
        END IF;
    EXCEPTION WHEN undefined_object OR invalid_parameter_value THEN
        DECLARE
            code text;
            msg text;
            det text;
            col text;
        BEGIN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                    col = COLUMN_NAME;
            IF col <> '' THEN
                RAISE;
            END IF;
            PERFORM pankha.api_reraise(pankha.api_fan_field(msg), code, msg, det);
        END;
    END;
    RETURN jsonb_build_object('agent_id', id, 'fan_id', fan,
                              'profile', (SELECT jsonb_build_object('name', x.profile_name, 'sensor_id', x.sensor_id)
                                          FROM pankha.fan_profile_assignments x
                                          WHERE x.agent_id = id AND x.fan_id = fan),
                              'command_id', cid);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profile_assign(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profile_assign(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profile_assign(text, text, jsonb) IS
'PUT /api/v1/agents/{agent_id}/fans/{fan_id}/profile (operator): makes profile drive the fan from sensor_id and queues apply_profile; with unassign true (DELETE on the same route) removes it and queues restore_auto.  Answers {agent_id, fan_id, profile, command_id}.';

CREATE FUNCTION pankha.api_profile_apply(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
    id text;
    fan text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'apply fan profiles');
    name := pankha.api_id(a, 'name');
    id := pankha.api_agent_id(a, 'agent_id', false);
    fan := pankha.api_id(a, 'fan_id');
    IF name IS NULL AND id IS NULL THEN
        PERFORM pankha.api_raise('22023', 'name', 'name: a profile name or an agent_id is required');
    END IF;
    IF fan IS NOT NULL AND id IS NULL THEN
        PERFORM pankha.api_raise('22023', 'agent_id', 'agent_id: is required with fan_id');
    END IF;
    IF name IS NOT NULL AND NOT EXISTS (SELECT FROM pankha.fan_profiles p WHERE p.profile_name = name) THEN
        PERFORM pankha.api_raise('42704', 'name', format('name: profile "%s" does not exist', name));
    END IF;
    RETURN jsonb_build_object('commands_queued', pankha.reapply_profiles(name, id, fan));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_profile_apply(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_profile_apply(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_profile_apply(text, text, jsonb) IS
'POST /api/v1/profiles/apply (operator): queues apply_profile again to the fans a profile drives (name), an agent''s fans (agent_id) or one fan (agent_id and fan_id), or the intersection; answers {commands_queued}.';

CREATE FUNCTION pankha.api_fan_limits(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    fan text;
    f pankha.fans;
    queued integer;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'change fan limits');
    id := pankha.api_agent_id(a);
    fan := pankha.api_id(a, 'fan_id', true);
    SELECT * INTO f FROM pankha.fans x WHERE x.agent_id = id AND x.fan_id = fan;
    IF NOT FOUND THEN
        PERFORM pankha.api_raise('42704', 'fan_id', format('fan_id: fan "%s" of agent "%s" does not exist', fan, id),
                                 'Fans are known once the agent has reported them.');
    END IF;
    queued := pankha.set_fan_limits(id, fan,
                                    coalesce(pankha.api_number(a, 'min_speed', 0, 100)::real, f.min_speed),
                                    coalesce(pankha.api_number(a, 'max_speed', 0, 100)::real, f.max_speed),
                                    CASE WHEN a ? 'emergency_temp' THEN pankha.api_number(a, 'emergency_temp', 0, 250)::real
                                         ELSE f.emergency_temp END,
                                    ui_user);
    SELECT * INTO f FROM pankha.fans x WHERE x.agent_id = id AND x.fan_id = fan;
    RETURN jsonb_build_object('agent_id', id, 'fan_id', fan, 'min_speed', f.min_speed,
                              'max_speed', f.max_speed, 'emergency_temp', f.emergency_temp,
                              'commands_queued', queued);
EXCEPTION WHEN numeric_value_out_of_range THEN
    DECLARE
        code text;
        msg text;
        det text;
        col text;
    BEGIN
        GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                col = COLUMN_NAME;
        IF col <> '' THEN
            RAISE;
        END IF;
        PERFORM pankha.api_reraise(pankha.api_fan_field(msg), code, msg, det);
        RETURN NULL;
    END;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_fan_limits(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_fan_limits(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_fan_limits(text, text, jsonb) IS
'PUT /api/v1/agents/{agent_id}/fans/{fan_id}/limits (admin): sets min_speed, max_speed (percent) and emergency_temp (°C, null to clear); fields left out keep their value.  Answers the limits and commands_queued.';

-- Emergency stop and restore auto share their targeting: one agent, one
-- group or the whole fleet, with confirm repeating the target.
CREATE FUNCTION pankha.api_fleet_command(ui_user text, ui_role text, args jsonb, command_type text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    grp text;
    fleet boolean;
    target text;
    agents text[];
    ttl interval;
    ids uuid[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator',
                                 CASE command_type WHEN 'emergency_stop' THEN 'stop fans' ELSE 'restore fans' END);
    id := pankha.api_agent_id(a, 'agent_id', false);
    grp := pankha.api_group_name(a, 'group', false);
    fleet := pankha.api_bool(a, 'fleet', false);
    IF (id IS NOT NULL)::integer + (grp IS NOT NULL)::integer + fleet::integer <> 1 THEN
        PERFORM pankha.api_raise('22023', 'agent_id', 'agent_id: give exactly one target: agent_id, group or fleet true');
    END IF;
    target := coalesce(id, grp, 'fleet');
    IF pankha.api_text(a, 'confirm', false, 64) IS DISTINCT FROM target THEN
        PERFORM pankha.api_raise('22023', 'confirm', format('confirm: must repeat the target, "%s"', target),
                                 'A fan command for many machines is sent only when confirm names its target: the agent id, the group name, or "fleet".');
    END IF;
    ttl := pankha.api_seconds(a, 'ttl_seconds', interval '10 minutes', 1, 86400);
    agents := CASE WHEN id IS NOT NULL THEN ARRAY[id]
                   WHEN grp IS NOT NULL THEN pankha.scope_agents('group', grp, NULL)
                   ELSE pankha.scope_agents('global', NULL, NULL) END;
    -- What pankha.send_command() does, for all the agents in one statement
    -- each (a fleet of 10,000 would otherwise take longer than a dashboard
    -- call may): these commands have no parameters to check, and
    -- supersede nothing (restore_auto without a fan_id matches no fan).
    WITH queued AS (
        INSERT INTO pankha.commands AS c (agent_id, command_type, parameters, priority, expires_at, issued_by)
        SELECT x, command_type, '{}', 'high', now() + ttl,
               coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user)
        FROM unnest(agents) x
        RETURNING c.command_id, c.agent_id
    ), announced AS (
        SELECT q.command_id, q.agent_id,
               pankha.audit('command.issued', q.agent_id,
                            jsonb_build_object('command_id', q.command_id, 'command_type', command_type,
                                               'parameters', '{}'::jsonb, 'priority', 'high',
                                               'expires_at', now() + ttl)) AS audited,
               pg_notify('pankha_command',
                         jsonb_build_object('agent_id', q.agent_id, 'command_id', q.command_id)::text) AS notified
        FROM queued q
    )
    SELECT coalesce(array_agg(a.command_id ORDER BY a.agent_id), '{}') INTO ids FROM announced a;
    RETURN jsonb_build_object('command_type', command_type, 'target', target,
                              'commands_queued', cardinality(ids),
                              'command_ids', to_jsonb(ids[1:1000]),
                              'command_ids_truncated', cardinality(ids) > 1000);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_fleet_command(text, text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_fleet_command(text, text, jsonb, text) IS
'Internal: queues a high-priority fan command to one agent, a group or the fleet once confirm repeats the target.';

CREATE FUNCTION pankha.api_emergency_stop(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
RETURN pankha.api_fleet_command(ui_user, ui_role, args, 'emergency_stop');
REVOKE ALL ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) IS
'POST /api/v1/emergency-stop (operator): queues emergency_stop (high priority, ttl_seconds default 600) to agent_id, every agent of group, or with fleet true every agent; confirm must repeat the target (the agent id, the group name or "fleet").  Answers {command_type, target, commands_queued, command_ids (the first 1000), command_ids_truncated}.';

CREATE FUNCTION pankha.api_restore_auto(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
RETURN pankha.api_fleet_command(ui_user, ui_role, args, 'restore_auto');
REVOKE ALL ON FUNCTION pankha.api_restore_auto(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_restore_auto(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_restore_auto(text, text, jsonb) IS
'POST /api/v1/restore-auto (operator): as pankha.api_emergency_stop(), with restore_auto (every fan back to its profile or the agent''s automatic control).';

-- ---------------------------------------------------------------------
-- Groups and settings
-- ---------------------------------------------------------------------

CREATE FUNCTION pankha.api_group_json(group_name text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT jsonb_build_object('name', g.group_name, 'description', g.description, 'created_at', g.created_at,
                          'members', (SELECT count(*) FROM pankha.agent_group_members m
                                      WHERE m.group_name = g.group_name))
FROM pankha.agent_groups g WHERE g.group_name = api_group_json.group_name
$$;
REVOKE ALL ON FUNCTION pankha.api_group_json(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_group_json(text) IS
'Internal: a group as the API shows it, with its number of members.';

CREATE FUNCTION pankha.api_groups(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read groups');
    n := pankha.api_page_size(a);
    after := pankha.api_cursor_in(a, '{text}');
    SELECT array_agg(pankha.api_group_json(g.group_name) ORDER BY g.group_name),
           array_agg(ARRAY[g.group_name] ORDER BY g.group_name)
    INTO items, keys
    FROM (SELECT * FROM pankha.agent_groups g
          WHERE after IS NULL OR g.group_name > after[1]
          ORDER BY g.group_name LIMIT n + 1) g;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_groups(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_groups(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_groups(text, text, jsonb) IS
'GET /api/v1/groups (viewer): groups by name with description and member count; args page_size, cursor.';

CREATE FUNCTION pankha.api_group_create(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage groups');
    name := pankha.api_id(a, 'name', true);
    BEGIN
        PERFORM pankha.create_group(name, pankha.api_text(a, 'description', false, 1000), ui_user);
    EXCEPTION WHEN unique_violation THEN
        PERFORM pankha.api_raise('23505', 'name', format('name: group "%s" already exists', name));
    END;
    RETURN pankha.api_group_json(name);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_group_create(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_group_create(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_group_create(text, text, jsonb) IS
'POST /api/v1/groups (admin): creates an empty group from name and description; unique_violation (23505) when it exists.';

CREATE FUNCTION pankha.api_group_update(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
    new_name text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage groups');
    PERFORM pankha.lock_settings();
    name := pankha.api_group_name(a, 'name');
    new_name := coalesce(pankha.api_id(a, 'new_name'), name);
    IF new_name <> name AND EXISTS (SELECT FROM pankha.agent_groups g WHERE g.group_name = new_name) THEN
        PERFORM pankha.api_raise('23505', 'new_name', format('new_name: group "%s" already exists', new_name));
    END IF;
    -- Members, settings and alert rules follow by ON UPDATE CASCADE; what
    -- agents run does not change, so nothing is queued.
    UPDATE pankha.agent_groups g
    SET group_name = new_name,
        description = CASE WHEN a ? 'description' THEN pankha.api_text(a, 'description', false, 1000)
                           ELSE g.description END
    WHERE g.group_name = name;
    RETURN pankha.api_group_json(new_name);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_group_update(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_group_update(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_group_update(text, text, jsonb) IS
'PATCH /api/v1/groups/{name} (admin): renames a group (new_name; its members, settings and alert rules follow) and/or changes its description.';

CREATE FUNCTION pankha.api_group_delete(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage groups');
    name := pankha.api_group_name(a, 'name');
    RETURN jsonb_build_object('name', name, 'deleted', true,
                              'agents_updated', pankha.delete_group(name, ui_user));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_group_delete(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_group_delete(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_group_delete(text, text, jsonb) IS
'DELETE /api/v1/groups/{name} (admin): deletes a group and its settings; answers agents_updated, the agents whose effective settings changed.';

CREATE FUNCTION pankha.api_group_members(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    name text;
    mode text;
    wanted text[];
    unknown text;
    agent text;
    added integer := 0;
    removed integer := 0;
    updated integer := 0;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage groups');
    name := pankha.api_group_name(a, 'name');
    mode := coalesce(pankha.api_enum(a, 'mode', '{set,add,remove}'), 'set');
    IF jsonb_typeof(a -> 'agent_ids') IS DISTINCT FROM 'array'
       OR jsonb_path_exists(a -> 'agent_ids', '$[*] ? (@.type() != "string")') THEN
        PERFORM pankha.api_raise('22023', 'agent_ids', 'agent_ids: must be an array of agent ids');
    END IF;
    IF jsonb_array_length(a -> 'agent_ids') > (pankha.api_limits() ->> 'members_max')::integer THEN
        PERFORM pankha.api_raise('54000', 'agent_ids',
                                 format('agent_ids: at most %s per request', pankha.api_limits() ->> 'members_max'));
    END IF;
    wanted := ARRAY(SELECT DISTINCT x FROM jsonb_array_elements_text(a -> 'agent_ids') x);
    SELECT w INTO unknown FROM unnest(wanted) w
    WHERE NOT EXISTS (SELECT FROM pankha.agents g WHERE g.agent_id = w) ORDER BY w LIMIT 1;
    IF unknown IS NOT NULL THEN
        PERFORM pankha.api_raise('42704', 'agent_ids', format('agent_ids: agent "%s" is not registered', left(unknown, 64)));
    END IF;
    IF mode IN ('set', 'add') THEN
        FOR agent IN SELECT w FROM unnest(wanted) w
                     WHERE pankha.agent_group(w) IS DISTINCT FROM name ORDER BY w LOOP
            updated := updated + pankha.set_agent_group(agent, name, ui_user);
            added := added + 1;
        END LOOP;
    END IF;
    FOR agent IN SELECT m.agent_id FROM pankha.agent_group_members m
                 WHERE m.group_name = name
                   AND CASE mode WHEN 'set' THEN m.agent_id <> ALL (wanted)
                                 WHEN 'remove' THEN m.agent_id = ANY (wanted) ELSE false END
                 ORDER BY m.agent_id LOOP
        updated := updated + pankha.set_agent_group(agent, NULL, ui_user);
        removed := removed + 1;
    END LOOP;
    RETURN pankha.api_group_json(name) || jsonb_build_object('added', added, 'removed', removed,
                                                             'agents_updated', updated);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_group_members(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_group_members(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_group_members(text, text, jsonb) IS
'PUT /api/v1/groups/{name}/members (admin): agent_ids (up to 10000) become the members (mode set, the default), join the group (add; leaving any other group) or leave it (remove); answers the group with added, removed and agents_updated.';

CREATE FUNCTION pankha.api_setting_definitions(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
BEGIN
    PERFORM pankha.api_args(args);
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read settings');
    RETURN jsonb_build_object('items', coalesce(
        (SELECT jsonb_agg(jsonb_build_object('key', d.key, 'type', d.value_type, 'min', d.min_value,
                                             'max', d.max_value, 'allowed', d.allowed,
                                             'default', d.default_value, 'unit', d.unit,
                                             'description', d.description) ORDER BY d.key)
         FROM pankha.setting_definitions d), '[]'));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_setting_definitions(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_setting_definitions(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_setting_definitions(text, text, jsonb) IS
'GET /api/v1/settings/definitions (viewer): every setting with key, type, min, max, allowed, default, unit and description, for a client to render a form.';

-- A scope field, checked like pankha.parse_scope() does.
CREATE FUNCTION pankha.api_scope(args jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    scope text := pankha.api_text(args, 'scope', true, 80);
BEGIN
    PERFORM pankha.parse_scope(scope);
    RETURN scope;
EXCEPTION WHEN invalid_parameter_value OR undefined_object THEN
    DECLARE
        code text;
        msg text;
        det text;
        col text;
    BEGIN
        GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                col = COLUMN_NAME;
        IF col <> '' THEN
            RAISE;
        END IF;
        PERFORM pankha.api_reraise('scope', code, msg, det);
        RETURN NULL;
    END;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_scope(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_scope(jsonb) IS
'Internal: the scope field of args (global, group:<name>, agent:<agent_id>) naming an existing group or agent.';

CREATE FUNCTION pankha.api_settings(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    want_scope text;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read settings');
    want_scope := pankha.api_scope(a);
    RETURN jsonb_build_object('scope', want_scope, 'values', coalesce(
        (SELECT jsonb_agg(jsonb_build_object('key', s.key, 'value', s.value, 'updated_at', s.updated_at,
                                             'updated_by', s.updated_by) ORDER BY s.key)
         FROM pankha.settings s WHERE s.scope = want_scope), '[]'));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_settings(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_settings(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_settings(text, text, jsonb) IS
'GET /api/v1/settings?scope= (viewer): the values set at one scope (global, group:<name>, agent:<agent_id>), not inherited ones; pankha.api_agent() has an agent''s effective settings with their sources.';

CREATE FUNCTION pankha.api_setting_set(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    want_scope text;
    want_key text;
    clear boolean;
    n integer;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'change settings');
    want_scope := pankha.api_scope(a);
    want_key := pankha.api_id(a, 'key', true);
    clear := pankha.api_bool(a, 'clear', false);
    IF NOT clear AND NOT pankha.api_has(a, 'value') THEN
        PERFORM pankha.api_raise('22023', 'value', 'value: is required (or clear true)');
    END IF;
    BEGIN
        IF clear THEN
            n := pankha.reset_setting(want_scope, want_key, ui_user);
        ELSE
            n := pankha.set_setting(want_scope, want_key, a -> 'value', ui_user);
        END IF;
    EXCEPTION WHEN invalid_parameter_value OR numeric_value_out_of_range THEN
        DECLARE
            code text;
            msg text;
            det text;
        BEGIN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
            PERFORM pankha.api_reraise(CASE WHEN msg LIKE 'unknown setting%' THEN 'key' ELSE 'value' END,
                                       code, msg, det);
        END;
    END;
    RETURN jsonb_build_object('scope', want_scope, 'key', want_key,
                              'value', (SELECT s.value FROM pankha.settings s
                                        WHERE s.scope = want_scope AND s.key = want_key),
                              'agents_updated', n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_setting_set(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_setting_set(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_setting_set(text, text, jsonb) IS
'PUT /api/v1/settings (operator): sets key to value at scope, or with clear true (DELETE on the same route) removes it there; answers {scope, key, value (null once cleared), agents_updated}.';

-- ---------------------------------------------------------------------
-- Alert rules, alerts, acknowledgement and silences
-- ---------------------------------------------------------------------

ALTER TABLE pankha.alerts ADD COLUMN acknowledged_at timestamptz,
                          ADD COLUMN acknowledged_by text,
                          ADD COLUMN ack_comment text;
COMMENT ON COLUMN pankha.alerts.acknowledged_at IS
'When an operator acknowledged the alert (pankha.api_alert_ack()); NULL while nobody has.';

CREATE TABLE pankha.alert_silences (
    silence_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id        bigint NOT NULL REFERENCES pankha.alert_rules ON DELETE CASCADE,
    agent_id       text REFERENCES pankha.agents ON DELETE CASCADE,
    target_id      text,
    silenced_until timestamptz NOT NULL,
    comment        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL DEFAULT session_user,
    lifted_at      timestamptz,
    CHECK (target_id IS NULL OR agent_id IS NOT NULL),
    CHECK (silenced_until > created_at)
);
CREATE INDEX ON pankha.alert_silences (rule_id);
COMMENT ON TABLE pankha.alert_silences IS
'Silences: a rule, or one series of it (agent_id, and target_id a sensor or fan), fires no alert until silenced_until unless lifted earlier (lifted_at).  Set with pankha.api_alert_silence().';
SELECT pg_catalog.pg_extension_config_dump('pankha.alert_silences', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.alert_silences', 'silence_id'), '');

-- The silence in force for a series (rule, agent, target: '' for agent rules).
CREATE FUNCTION pankha.alert_silenced_until(rule_id bigint, agent_id text, target_id text)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
SELECT max(s.silenced_until) FROM pankha.alert_silences s
WHERE s.rule_id = alert_silenced_until.rule_id
  AND (s.agent_id IS NULL OR s.agent_id = alert_silenced_until.agent_id)
  AND (s.target_id IS NULL OR s.target_id = alert_silenced_until.target_id)
  AND s.lifted_at IS NULL AND s.silenced_until > now()
$$;
REVOKE ALL ON FUNCTION pankha.alert_silenced_until(bigint, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.alert_silenced_until(bigint, text, text) IS
'Until when a series of a rule (agent, sensor or fan id; '''' for agent rules) is silenced, or NULL when it is not; pankha.evaluate_alerts() fires nothing for it until then.';
REVOKE ALL ON FUNCTION pankha.alert_silenced_until(bigint, text, text) FROM PUBLIC;

CREATE FUNCTION pankha.api_alert_rule_json(r pankha.alert_rules) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN jsonb_build_object(
    'rule_id', r.rule_id, 'name', r.name, 'enabled', r.enabled, 'agent_id', r.agent_id,
    'group', r.agent_group, 'sensor_type', r.sensor_type, 'target_id', r.target_id,
    'condition', r.condition, 'threshold', r.threshold,
    'duration_seconds', extract(epoch FROM r.duration)::double precision,
    'cooldown_seconds', extract(epoch FROM r.cooldown)::double precision,
    'severity', r.severity, 'created_at', r.created_at,
    'silenced_until', pankha.alert_silenced_until(r.rule_id, NULL, NULL));
REVOKE ALL ON FUNCTION pankha.api_alert_rule_json(pankha.alert_rules) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_alert_rule_json(pankha.alert_rules) IS
'Internal: an alert rule as the API shows it; silenced_until is set when the whole rule is silenced.';

CREATE FUNCTION pankha.api_alert_rules(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read alert rules');
    n := pankha.api_page_size(a);
    after := pankha.api_cursor_in(a, '{bigint}');
    SELECT array_agg(pankha.api_alert_rule_json(r) ORDER BY r.rule_id),
           array_agg(ARRAY[r.rule_id::text] ORDER BY r.rule_id)
    INTO items, keys
    FROM (SELECT * FROM pankha.alert_rules r
          WHERE after IS NULL OR r.rule_id > after[1]::bigint
          ORDER BY r.rule_id LIMIT n + 1) r;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_rules(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_rules(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_rules(text, text, jsonb) IS
'GET /api/v1/alert-rules (viewer): alert rules by id; args page_size, cursor.';

-- The field an error of pankha.check_alert_rule() is about.
CREATE FUNCTION pankha.api_alert_rule_field(message text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN message LIKE '%rule name%' OR message LIKE 'alert rule %' THEN 'name'
            WHEN message LIKE '%condition "%' THEN 'condition'
            WHEN message LIKE 'threshold%' THEN 'threshold'
            WHEN message LIKE '%duration%' THEN 'duration_seconds'
            WHEN message LIKE '%cooldown%' THEN 'cooldown_seconds'
            WHEN message LIKE '%severity%' THEN 'severity'
            WHEN message LIKE 'agent %' THEN 'agent_id'
            WHEN message LIKE 'group %' THEN 'group'
            WHEN message LIKE 'sensor_type%' THEN 'sensor_type'
            WHEN message LIKE 'target_id%' THEN 'target_id' END;
REVOKE ALL ON FUNCTION pankha.api_alert_rule_field(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_alert_rule_field(text) IS
'Internal: the API field an error of the alert rule checks is about.';

-- Creates (rule_id NULL) or changes an alert rule from args over the
-- current values, checked as pankha.add_alert_rule() checks them.
CREATE FUNCTION pankha.api_alert_rule_write(args jsonb, rule_id bigint) RETURNS pankha.alert_rules
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    a jsonb := args;
    old pankha.alert_rules;
    r pankha.alert_rules;
BEGIN
    IF rule_id IS NOT NULL THEN
        SELECT * INTO old FROM pankha.alert_rules x WHERE x.rule_id = api_alert_rule_write.rule_id FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM pankha.api_raise('42704', 'rule_id', format('rule_id: alert rule %s does not exist', rule_id));
        END IF;
        r := old;
    ELSE
        r.enabled := true;
        r.duration := interval '0';
        r.cooldown := interval '5 minutes';
        r.severity := 'warning';
    END IF;
    IF a ? 'name' OR rule_id IS NULL THEN r.name := pankha.api_id(a, 'name', true); END IF;
    IF a ? 'condition' OR rule_id IS NULL THEN r.condition := pankha.api_text(a, 'condition', true, 64); END IF;
    IF a ? 'threshold' THEN r.threshold := pankha.api_number(a, 'threshold', -1e6, 1e6)::real; END IF;
    IF a ? 'duration_seconds' THEN
        r.duration := pankha.api_seconds(a, 'duration_seconds', interval '0', 0, 366 * 86400);
    END IF;
    IF a ? 'cooldown_seconds' THEN
        r.cooldown := pankha.api_seconds(a, 'cooldown_seconds', interval '5 minutes', 0, 366 * 86400);
    END IF;
    IF a ? 'severity' THEN r.severity := pankha.api_text(a, 'severity', true, 64); END IF;
    IF a ? 'agent_id' THEN r.agent_id := pankha.api_id(a, 'agent_id'); END IF;
    IF a ? 'group' THEN r.agent_group := pankha.api_id(a, 'group'); END IF;
    IF a ? 'sensor_type' THEN r.sensor_type := pankha.api_text(a, 'sensor_type', false, 64); END IF;
    IF a ? 'target_id' THEN r.target_id := pankha.api_id(a, 'target_id'); END IF;
    IF a ? 'enabled' THEN r.enabled := pankha.api_bool(a, 'enabled', true); END IF;
    BEGIN
        PERFORM pankha.check_alert_rule(r.name, r.condition, r.threshold, r.duration, r.cooldown, r.severity,
                                        r.agent_id, r.agent_group, r.sensor_type, r.target_id);
        IF rule_id IS NULL THEN
            INSERT INTO pankha.alert_rules (name, enabled, condition, threshold, duration, cooldown, severity,
                                            agent_id, agent_group, sensor_type, target_id)
            VALUES (r.name, r.enabled, r.condition, r.threshold, r.duration, r.cooldown, r.severity,
                    r.agent_id, r.agent_group, r.sensor_type, r.target_id)
            RETURNING * INTO r;
        ELSE
            UPDATE pankha.alert_rules x
            SET name = r.name, enabled = r.enabled, condition = r.condition, threshold = r.threshold,
                duration = r.duration, cooldown = r.cooldown, severity = r.severity, agent_id = r.agent_id,
                agent_group = r.agent_group, sensor_type = r.sensor_type, target_id = r.target_id
            WHERE x.rule_id = api_alert_rule_write.rule_id
            RETURNING * INTO r;
        END IF;
    EXCEPTION
        WHEN unique_violation THEN
            PERFORM pankha.api_raise('42710', 'name', format('name: alert rule "%s" already exists', r.name));
        WHEN invalid_parameter_value OR undefined_object THEN
            DECLARE
                code text;
                msg text;
                det text;
            BEGIN
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
                PERFORM pankha.api_reraise(pankha.api_alert_rule_field(msg), code, msg, det);
            END;
    END;
    PERFORM pankha.audit(CASE WHEN rule_id IS NULL THEN 'alert_rule.created' ELSE 'alert_rule.updated' END,
                         r.agent_id,
                         jsonb_build_object('rule_id', r.rule_id, 'old', CASE WHEN rule_id IS NOT NULL THEN to_jsonb(old) END,
                                            'new', to_jsonb(r)));
    RETURN r;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_rule_write(jsonb, bigint) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_alert_rule_write(jsonb, bigint) IS
'Internal: inserts or updates an alert rule from API args (fields left out keep their value) and audits it as alert_rule.created or alert_rule.updated.';

CREATE FUNCTION pankha.api_alert_rule_create(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage alert rules');
    RETURN pankha.api_alert_rule_json(pankha.api_alert_rule_write(a, NULL));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_rule_create(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_rule_create(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_rule_create(text, text, jsonb) IS
'POST /api/v1/alert-rules (admin): creates a rule from name, condition, threshold, duration_seconds, cooldown_seconds, severity, agent_id, group, sensor_type, target_id and enabled, checked as pankha.add_alert_rule() checks them; answers the rule.';

CREATE FUNCTION pankha.api_alert_rule_update(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage alert rules');
    RETURN pankha.api_alert_rule_json(
        pankha.api_alert_rule_write(a, pankha.api_int(a, 'rule_id', NULL, 1, 9223372036854775807, true)));
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_rule_update(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_rule_update(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_rule_update(text, text, jsonb) IS
'PATCH /api/v1/alert-rules/{rule_id} (admin): changes the fields given (as for create; null clears an optional one); answers the rule.';

CREATE FUNCTION pankha.api_alert_rule_delete(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id bigint;
    r pankha.alert_rules;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage alert rules');
    id := pankha.api_int(a, 'rule_id', NULL, 1, 9223372036854775807, true);
    DELETE FROM pankha.alert_rules x WHERE x.rule_id = id RETURNING * INTO r;
    IF NOT FOUND THEN
        PERFORM pankha.api_raise('42704', 'rule_id', format('rule_id: alert rule %s does not exist', id));
    END IF;
    PERFORM pankha.audit('alert_rule.deleted', r.agent_id, jsonb_build_object('rule_id', id, 'old', to_jsonb(r)));
    RETURN jsonb_build_object('rule_id', id, 'deleted', true);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_rule_delete(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_rule_delete(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_rule_delete(text, text, jsonb) IS
'DELETE /api/v1/alert-rules/{rule_id} (admin): deletes a rule (its firing alerts resolve on the worker''s next pass).';

CREATE FUNCTION pankha.api_alert_json(a pankha.alerts) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN pankha.alert_json(a) || jsonb_build_object(
    'acknowledged_at', a.acknowledged_at, 'acknowledged_by', a.acknowledged_by, 'ack_comment', a.ack_comment,
    'silenced_until', pankha.alert_silenced_until(a.rule_id, a.agent_id, coalesce(a.target_id, '')));
REVOKE ALL ON FUNCTION pankha.api_alert_json(pankha.alerts) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_alert_json(pankha.alerts) IS
'Internal: an alert as pankha.alert_json() has it, with its acknowledgement and the silence covering its series.';

CREATE FUNCTION pankha.api_alerts(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    want_state text;
    want_severity text;
    id text;
    rule bigint;
    from_ts timestamptz;
    to_ts timestamptz;
    acked boolean;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read alerts');
    n := pankha.api_page_size(a);
    want_state := pankha.api_enum(a, 'state', '{firing,resolved}');
    want_severity := pankha.api_enum(a, 'severity', '{info,warning,critical}');
    id := pankha.api_id(a, 'agent_id');
    rule := pankha.api_int(a, 'rule_id', NULL, 1, 9223372036854775807);
    from_ts := pankha.api_time(a, 'from');
    to_ts := pankha.api_time(a, 'to');
    acked := pankha.api_bool(a, 'acknowledged');
    after := pankha.api_cursor_in(a, '{timestamptz,bigint}');
    SELECT array_agg(pankha.api_alert_json(x) ORDER BY x.fired_at DESC, x.alert_id DESC),
           array_agg(ARRAY[x.fired_at::text, x.alert_id::text] ORDER BY x.fired_at DESC, x.alert_id DESC)
    INTO items, keys
    FROM (SELECT * FROM pankha.alerts x
          WHERE (want_state IS NULL OR x.state = want_state)
            AND (want_severity IS NULL OR x.severity = want_severity)
            AND (id IS NULL OR x.agent_id = id)
            AND (rule IS NULL OR x.rule_id = rule)
            AND (from_ts IS NULL OR x.fired_at >= from_ts)
            AND (to_ts IS NULL OR x.fired_at < to_ts)
            AND (acked IS NULL OR (x.acknowledged_at IS NOT NULL) = acked)
            AND (after IS NULL OR (x.fired_at, x.alert_id) < (after[1]::timestamptz, after[2]::bigint))
          ORDER BY x.fired_at DESC, x.alert_id DESC LIMIT n + 1) x;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alerts(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alerts(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alerts(text, text, jsonb) IS
'GET /api/v1/alerts (viewer): alerts newest first; args state (firing, resolved), severity, agent_id, rule_id, from and to (fired_at), acknowledged, page_size, cursor.';

CREATE FUNCTION pankha.api_alert_ack(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id bigint;
    al pankha.alerts;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'acknowledge alerts');
    id := pankha.api_int(a, 'alert_id', NULL, 1, 9223372036854775807, true);
    SELECT * INTO al FROM pankha.alerts x WHERE x.alert_id = id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pankha.api_raise('42704', 'alert_id', format('alert_id: alert %s does not exist', id));
    END IF;
    -- Acknowledging twice keeps the first acknowledgement.
    IF al.acknowledged_at IS NULL THEN
        UPDATE pankha.alerts x
        SET acknowledged_at = now(),
            acknowledged_by = coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user),
            ack_comment = pankha.api_text(a, 'comment', false, 1000)
        WHERE x.alert_id = id
        RETURNING * INTO al;
        PERFORM pankha.audit('alert.acknowledged', al.agent_id,
                             jsonb_build_object('alert_id', id, 'rule', al.rule_name, 'comment', al.ack_comment));
        PERFORM pg_notify('pankha_alert', pankha.api_alert_json(al)::text);
    END IF;
    RETURN pankha.api_alert_json(al);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_ack(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_ack(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_ack(text, text, jsonb) IS
'POST /api/v1/alerts/{alert_id}/ack (operator): acknowledges an alert (with an optional comment), audits alert.acknowledged and NOTIFYs pankha_alert with the alert; acknowledging again changes nothing.  Answers the alert.';

CREATE FUNCTION pankha.api_silence_json(s pankha.alert_silences) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN jsonb_build_object('silence_id', s.silence_id, 'rule_id', s.rule_id, 'agent_id', s.agent_id,
                          'target_id', s.target_id, 'silenced_until', s.silenced_until,
                          'comment', s.comment, 'created_at', s.created_at, 'created_by', s.created_by,
                          'lifted_at', s.lifted_at,
                          'active', s.lifted_at IS NULL AND s.silenced_until > now());
REVOKE ALL ON FUNCTION pankha.api_silence_json(pankha.alert_silences) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_silence_json(pankha.alert_silences) IS
'Internal: a silence as the API shows it.';

CREATE FUNCTION pankha.api_alert_silence(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    rule bigint;
    id text;
    target text;
    until timestamptz;
    s pankha.alert_silences;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'silence alerts');
    rule := pankha.api_int(a, 'rule_id', NULL, 1, 9223372036854775807, true);
    IF NOT EXISTS (SELECT FROM pankha.alert_rules r WHERE r.rule_id = rule) THEN
        PERFORM pankha.api_raise('42704', 'rule_id', format('rule_id: alert rule %s does not exist', rule));
    END IF;
    id := pankha.api_agent_id(a, 'agent_id', false);
    target := pankha.api_id(a, 'target_id');
    IF target IS NOT NULL AND id IS NULL THEN
        PERFORM pankha.api_raise('22023', 'agent_id', 'agent_id: is required with target_id');
    END IF;
    IF NOT pankha.api_has(a, 'until') THEN
        PERFORM pankha.api_raise('22023', 'until', 'until: is required');
    END IF;
    until := pankha.api_time(a, 'until');
    IF until <= now() OR until > now() + interval '366 days' THEN
        PERFORM pankha.api_raise('22023', 'until', 'until: must be in the future, at most 366 days ahead');
    END IF;
    INSERT INTO pankha.alert_silences (rule_id, agent_id, target_id, silenced_until, comment, created_by)
    VALUES (rule, id, target, until, pankha.api_text(a, 'comment', false, 1000),
            coalesce(nullif(current_setting('pankha_audit.ui_user', true), ''), session_user))
    RETURNING * INTO s;
    PERFORM pankha.audit('alert.silenced', id, to_jsonb(s) - 'agent_id');
    RETURN pankha.api_silence_json(s);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_silence(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_silence(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_silence(text, text, jsonb) IS
'POST /api/v1/alert-silences (operator): silences rule_id (all its series, or those of agent_id, or the one of agent_id and target_id) until a time at most 366 days ahead, with a comment; the worker fires no alert for a silenced series until then (alerts already firing stay firing and still resolve).  Audited as alert.silenced.';

CREATE FUNCTION pankha.api_alert_unsilence(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id bigint;
    s pankha.alert_silences;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'operator', 'silence alerts');
    id := pankha.api_int(a, 'silence_id', NULL, 1, 9223372036854775807, true);
    UPDATE pankha.alert_silences x SET lifted_at = now()
    WHERE x.silence_id = id AND x.lifted_at IS NULL
    RETURNING * INTO s;
    IF NOT FOUND THEN
        SELECT * INTO s FROM pankha.alert_silences x WHERE x.silence_id = id;
        IF NOT FOUND THEN
            PERFORM pankha.api_raise('42704', 'silence_id', format('silence_id: silence %s does not exist', id));
        END IF;
    ELSE
        PERFORM pankha.audit('alert.unsilenced', s.agent_id, jsonb_build_object('silence_id', id, 'rule_id', s.rule_id));
    END IF;
    RETURN pankha.api_silence_json(s);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_unsilence(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_unsilence(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_unsilence(text, text, jsonb) IS
'DELETE /api/v1/alert-silences/{silence_id} (operator): lifts a silence before its time (audited as alert.unsilenced); lifting it again changes nothing.';

CREATE FUNCTION pankha.api_alert_silences(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    want_active boolean;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read alerts');
    n := pankha.api_page_size(a);
    want_active := pankha.api_bool(a, 'active', true);
    after := pankha.api_cursor_in(a, '{bigint}');
    SELECT array_agg(pankha.api_silence_json(s) ORDER BY s.silence_id DESC),
           array_agg(ARRAY[s.silence_id::text] ORDER BY s.silence_id DESC)
    INTO items, keys
    FROM (SELECT * FROM pankha.alert_silences s
          WHERE (NOT want_active OR (s.lifted_at IS NULL AND s.silenced_until > now()))
            AND (after IS NULL OR s.silence_id < after[1]::bigint)
          ORDER BY s.silence_id DESC LIMIT n + 1) s;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_alert_silences(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_alert_silences(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_alert_silences(text, text, jsonb) IS
'GET /api/v1/alert-silences (viewer): silences newest first, only those in force unless active is false; args page_size, cursor.';

-- ---------------------------------------------------------------------
-- Audit log, reports, tokens
-- ---------------------------------------------------------------------

CREATE FUNCTION pankha.api_audit(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    id text;
    actor text;
    action text;
    prefix text;
    from_ts timestamptz;
    to_ts timestamptz;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'read the audit log');
    n := pankha.api_page_size(a);
    id := pankha.api_id(a, 'agent_id');
    actor := pankha.api_text(a, 'actor', false, 64);
    action := pankha.api_text(a, 'action', false, 64);
    IF action LIKE '%*' THEN
        prefix := left(action, -1);
        action := NULL;
    END IF;
    from_ts := pankha.api_time(a, 'from');
    to_ts := pankha.api_time(a, 'to');
    after := pankha.api_cursor_in(a, '{timestamptz,bigint}');
    SELECT array_agg(jsonb_build_object('audit_id', l.audit_id, 'logged_at', l.logged_at, 'event', l.event,
                                        'agent_id', l.agent_id, 'ui_user', l.ui_user, 'db_role', l.db_role,
                                        'application_name', l.application_name,
                                        'client_addr', l.client_addr, 'details', l.details)
                     ORDER BY l.logged_at DESC, l.audit_id DESC),
           array_agg(ARRAY[l.logged_at::text, l.audit_id::text] ORDER BY l.logged_at DESC, l.audit_id DESC)
    INTO items, keys
    FROM (SELECT * FROM pankha.audit_log l
          WHERE (id IS NULL OR l.agent_id = id)
            AND (actor IS NULL OR l.ui_user = actor OR (l.ui_user IS NULL AND l.db_role = actor))
            AND (action IS NULL OR l.event = action)
            AND (prefix IS NULL OR starts_with(l.event, prefix))
            AND (from_ts IS NULL OR l.logged_at >= from_ts)
            AND (to_ts IS NULL OR l.logged_at < to_ts)
            AND (after IS NULL OR (l.logged_at, l.audit_id) < (after[1]::timestamptz, after[2]::bigint))
          ORDER BY l.logged_at DESC, l.audit_id DESC LIMIT n + 1) l;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_audit(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_audit(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_audit(text, text, jsonb) IS
'GET /api/v1/audit (admin): audit rows newest first; args agent_id, actor (dashboard user, or database role for rows without one), action (an event, or a prefix ending in *, e.g. command.*), from, to, page_size, cursor.';

-- A report's range: from and to, at most report_range_max_days apart.
CREATE FUNCTION pankha.api_report_range(args jsonb, OUT from_ts timestamptz, OUT to_ts timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
BEGIN
    to_ts := pankha.api_time(args, 'to', now());
    from_ts := pankha.api_time(args, 'from', to_ts - interval '1 day');
    IF from_ts >= to_ts THEN
        PERFORM pankha.api_raise('22023', 'from', 'from: must be before to');
    END IF;
    IF to_ts - from_ts > make_interval(days => (pankha.api_limits() ->> 'report_range_max_days')::integer) THEN
        PERFORM pankha.api_raise('22023', 'from',
                                 format('from: a report spans at most %s days', pankha.api_limits() ->> 'report_range_max_days'));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pankha.api_report_range(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION pankha.api_report_range(jsonb) IS
'Internal: the from and to fields of a report (default the last day), at most 31 days apart.';

CREATE FUNCTION pankha.api_agent_report(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id text;
    rng record;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read reports');
    id := pankha.api_agent_id(a);
    rng := pankha.api_report_range(a);
    RETURN (SELECT (to_jsonb(r) - 'longest_gap')
                   || jsonb_build_object('from', rng.from_ts, 'to', rng.to_ts,
                                         'longest_gap_seconds', extract(epoch FROM r.longest_gap))
            FROM pankha.agent_report(id, rng.from_ts, rng.to_ts) r);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_agent_report(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_agent_report(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_agent_report(text, text, jsonb) IS
'GET /api/v1/agents/{agent_id}/report (viewer): pankha.agent_report() between from and to (default the last day, at most 31 days), longest_gap in seconds.';

CREATE FUNCTION pankha.api_fleet_report(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    rng record;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'viewer', 'read reports');
    n := pankha.api_page_size(a, (pankha.api_limits() ->> 'report_page_size_max')::integer);
    rng := pankha.api_report_range(a);
    after := pankha.api_cursor_in(a, '{text}');
    SELECT array_agg((to_jsonb(r) - 'longest_gap')
                     || jsonb_build_object('longest_gap_seconds', extract(epoch FROM r.longest_gap))
                     ORDER BY g.agent_id),
           array_agg(ARRAY[g.agent_id] ORDER BY g.agent_id)
    INTO items, keys
    FROM (SELECT x.agent_id FROM pankha.agents x
          WHERE after IS NULL OR x.agent_id > after[1]
          ORDER BY x.agent_id LIMIT n + 1) g
    CROSS JOIN LATERAL pankha.agent_report(g.agent_id, rng.from_ts, rng.to_ts) r;
    RETURN pankha.api_page(items, keys, n) || jsonb_build_object('from', rng.from_ts, 'to', rng.to_ts);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_fleet_report(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_fleet_report(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_fleet_report(text, text, jsonb) IS
'GET /api/v1/reports/fleet (viewer): pankha.agent_report() for a page of agents by id (page_size at most 100) between from and to (default the last day, at most 31 days).';

CREATE FUNCTION pankha.api_tokens(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    n integer;
    want_kind text;
    want_active boolean;
    after text[];
    items jsonb[];
    keys text[];
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage tokens');
    n := pankha.api_page_size(a);
    want_kind := pankha.api_enum(a, 'kind', '{agent,enrollment,ui}');
    want_active := pankha.api_bool(a, 'active');
    after := pankha.api_cursor_in(a, '{bigint}');
    SELECT array_agg(to_jsonb(t) ORDER BY t.token_id DESC), array_agg(ARRAY[t.token_id::text] ORDER BY t.token_id DESC)
    INTO items, keys
    FROM (SELECT * FROM pankha.token_list t
          WHERE (want_kind IS NULL OR t.kind = want_kind)
            AND (want_active IS NULL OR t.active = want_active)
            AND (after IS NULL OR t.token_id < after[1]::bigint)
          ORDER BY t.token_id DESC LIMIT n + 1) t;
    RETURN pankha.api_page(items, keys, n);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_tokens(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_tokens(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_tokens(text, text, jsonb) IS
'GET /api/v1/tokens (admin): tokens newest first as pankha.token_list shows them (never the secret or its digest); args kind (agent, enrollment, ui), active, page_size, cursor.';

CREATE FUNCTION pankha.api_token_create(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    want_kind text;
    secret text;
    expires interval;
    id bigint;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage tokens');
    want_kind := pankha.api_enum(a, 'kind', '{ui,enrollment}', true);
    expires := pankha.api_seconds(a, 'expires_in_seconds', NULL, 60, 3660 * 86400);
    IF want_kind = 'ui' THEN
        secret := pankha.create_ui_token(pankha.api_id(a, 'user_name', true),
                                         pankha.api_enum(a, 'role', '{viewer,operator,admin}', true));
        id := (SELECT t.token_id FROM pankha.tokens t WHERE t.selector = substr(secret, 5, 16));
        -- The same transaction, so bridges load the token whole.
        UPDATE pankha.tokens t SET comment = pankha.api_text(a, 'comment', false, 1000), expires_at = now() + expires
        WHERE t.token_id = id;
    ELSE
        secret := pankha.create_enrollment_key(pankha.api_text(a, 'comment', false, 1000),
                                               coalesce(expires, interval '1 day'),
                                               pankha.api_int(a, 'max_uses', NULL, 1, 1000000)::integer);
        id := (SELECT t.token_id FROM pankha.tokens t WHERE t.selector = substr(secret, 5, 16));
    END IF;
    UPDATE pankha.tokens t SET created_by = coalesce(ui_user, session_user) WHERE t.token_id = id;
    RETURN (SELECT to_jsonb(t) FROM pankha.token_list t WHERE t.token_id = id) || jsonb_build_object('token', secret);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_token_create(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_token_create(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_token_create(text, text, jsonb) IS
'POST /api/v1/tokens (admin): kind ui (user_name, role, comment, expires_in_seconds) or enrollment (comment, expires_in_seconds default one day, max_uses); answers the token as listed plus "token", the secret, shown only this once.';

CREATE FUNCTION pankha.api_token_revoke(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
AS $$
DECLARE
    a jsonb := pankha.api_args(args);
    id bigint;
    revoked boolean;
BEGIN
    PERFORM pankha.api_authorize(ui_user, ui_role, 'admin', 'manage tokens');
    id := pankha.api_int(a, 'token_id', NULL, 1, 9223372036854775807, true);
    IF NOT EXISTS (SELECT FROM pankha.tokens t WHERE t.token_id = id) THEN
        PERFORM pankha.api_raise('42704', 'token_id', format('token_id: token %s does not exist', id));
    END IF;
    revoked := pankha.revoke_token(id);
    RETURN (SELECT to_jsonb(t) FROM pankha.token_list t WHERE t.token_id = id) || jsonb_build_object('revoked', revoked);
END
$$;
REVOKE ALL ON FUNCTION pankha.api_token_revoke(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_token_revoke(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_token_revoke(text, text, jsonb) IS
'DELETE /api/v1/tokens/{token_id} (admin): revokes a token of any kind; revoked is false when it already was.  Answers the token as listed.';

GRANT EXECUTE ON FUNCTION pankha.api_limits() TO pankha_bridge;
