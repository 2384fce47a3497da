-- Pankha upgrade from 0.1.0 (released, frozen in pankha--0.1.0.sql) to 0.2.0.
--
-- Every change this version makes to the numbered parts in extension/sql
-- is repeated here, so that ALTER EXTENSION pankha UPDATE on a 0.1.0
-- database ends with exactly what CREATE EXTENSION pankha installs
-- (regress/t/upgrade.pl compares the two catalogs object by object).
-- Add each change under a heading naming its feature, in the order the
-- changes landed; use CREATE OR REPLACE for functions whose signature stays,
-- DROP and CREATE (with the grants and comments again) where it changes.
\echo Use "ALTER EXTENSION pankha UPDATE TO '0.2.0'" to load this file. \quit

-- ingest: frames from agents whose clock is ahead keep their own timestamp
-- as their identity (M4).
CREATE INDEX readings_ahead ON pankha.readings (agent_id, agent_ts) WHERE agent_ts IS NOT NULL;
-- privileges (issue 13: H3, M8, L7) ------------------------------------
-- The bridge's connection functions run as their owner, so that a login
-- role holding only pankha_bridge can run the bridge; the worker's
-- functions pin their search_path (pg_catalog, then pg_temp last: they name
-- every pankha object with its schema); every function is granted deliberately
-- or revoked from PUBLIC (regress/sql/privileges.sql holds the list).
ALTER FUNCTION pankha.connection_opened(text, text, text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.connection_closed(bigint, integer, text, bigint, bigint, bigint, bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.bridge_started(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.record_status(text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.agent_sync(text, text, text, jsonb, jsonb)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.agent_group(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_partition(timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_partitions(timestamptz, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.maintain() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_time_partition(text, text, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.ensure_rollup_partitions(timestamptz, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_horizon() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_hours(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_rebuild() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.retention(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.archive_partition(regclass, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.drop_expired_partitions() SET search_path = pg_catalog, pg_temp;

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

-- Privileges (issue 13).  Functions are executable by PUBLIC unless revoked,
-- so each one is either revoked here or deliberately left to PUBLIC: only
-- pure functions of their arguments (the payload decoders) are.  The
-- worker's own functions and the helpers of SECURITY DEFINER functions
-- (they run as the owner) are the owner's alone; flush_liveness above all,
-- which changes shared memory that the offline check trusts.  Readers get
-- agent_liveness and ingest_stats in 20_credentials.sql, once the roles exist.
REVOKE ALL ON FUNCTION pankha._catalog_add(text[], "char"[], text[], text[], real[], real[]),
                       pankha._fan_status_code(text),
                       pankha._catalog_changed(),
                       pankha._forget_agent_readings(),
                       pankha.ensure_partition(timestamptz),
                       pankha.ensure_partitions(timestamptz, timestamptz),
                       pankha.agent_liveness(),
                       pankha.flush_liveness(),
                       pankha.ingest_stats(),
                       pankha.maintain()
    FROM PUBLIC;

-- Privileges (issue 13): what readers may see of 10_ingest.sql (the roles
-- exist only from this part on); the bridge reads it through pankha_reader.
REVOKE ALL ON FUNCTION pankha.check_agent_id(text), pankha.tokens_notify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.agent_liveness(), pankha.ingest_stats() TO pankha_reader;
GRANT SELECT ON pankha.latest, pankha.fan_statuses TO pankha_reader;

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.set_ui_user(text), pankha.audit_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.audit_retention() TO pankha_reader;

-- Privileges (issue 13): the checks are helpers of send_command.
REVOKE ALL ON FUNCTION pankha.check_agent(text),
                       pankha.check_command(text, text, jsonb),
                       pankha.check_keys(text, jsonb, text[]),
                       pankha.find_fan(text, jsonb)
    FROM PUBLIC;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.check_setting(text, jsonb, text),
                       pankha.check_settings(jsonb, text),
                       pankha.lock_settings(),
                       pankha.parse_scope(text),
                       pankha.scope_agents(text, text, text)
    FROM PUBLIC;

-- Privileges (issue 13): helpers of the SECURITY DEFINER functions above.
REVOKE ALL ON FUNCTION pankha.check_profile_points(jsonb),
                       pankha.check_profile_tuning(real, real),
                       pankha.profile_parameters(text, jsonb, jsonb, jsonb)
    FROM PUBLIC;

-- Privileges (issue 13): the worker's functions are the owner's alone;
-- readers read the rollups (pankha.history does, for the bridge too).
REVOKE ALL ON FUNCTION pankha.ensure_time_partition(text, text, timestamptz),
                       pankha.ensure_rollup_partitions(timestamptz, timestamptz),
                       pankha.rollup_horizon(),
                       pankha.rollup_minutes(text[], timestamptz[], timestamptz[]),
                       pankha.rollup_hours(text[], timestamptz[], timestamptz[]),
                       pankha.rollup(boolean),
                       pankha.rollup_rebuild()
    FROM PUBLIC;
GRANT SELECT ON pankha.rollup_1m, pankha.rollup_1h TO pankha_reader;

-- Privileges (issue 13).
REVOKE ALL ON FUNCTION pankha.retention(text) FROM PUBLIC;

-- Privileges (issue 13): the worker's and the owner's.
REVOKE ALL ON FUNCTION pankha.update_interval(text),
                       pankha.offline_threshold(text),
                       pankha.agent_in_group(text, text),
                       pankha.add_alert_rule(text, text, real, interval, interval, text, text, text, text, text),
                       pankha.alert_observations(),
                       pankha.alert_json(pankha.alerts)
    FROM PUBLIC;

-- Privileges (issue 13): readers (and so the bridge) query history; the
-- reports read alerts and commands, which are the owner's.
REVOKE ALL ON FUNCTION pankha.find_series(text, text),
                       pankha.history_source(timestamptz, timestamptz, interval),
                       pankha.history(text, text, timestamptz, timestamptz, interval),
                       pankha.history(text, text[], timestamptz, timestamptz, interval),
                       pankha.agent_report(text, timestamptz, timestamptz),
                       pankha.fleet_report(timestamptz, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.find_series(text, text),
                          pankha.history_source(timestamptz, timestamptz, interval),
                          pankha.history(text, text, timestamptz, timestamptz, interval),
                          pankha.history(text, text[], timestamptz, timestamptz, interval)
    TO pankha_reader;
-- ---------------------------------------------------------------------
-- API (issue 11): the dashboard API functions of 80_api.sql, and in
-- 60_alerts.sql pankha.check_alert_rule() (taken out of add_alert_rule) and
-- the silences in pankha.evaluate_alerts().
-- ---------------------------------------------------------------------

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
SET search_path = pg_catalog, pankha
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
    LEFT JOIN LATERAL (SELECT r.ts, r.received_at, r.payload FROM pankha.readings r
                       WHERE r.agent_id = g.agent_id ORDER BY r.ts DESC LIMIT 1) r ON true
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
SET search_path = pg_catalog, pankha
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
    LEFT JOIN LATERAL (SELECT r.ts, r.received_at, r.payload FROM pankha.readings r
                       WHERE r.agent_id = g.agent_id ORDER BY r.ts DESC LIMIT 1) r ON true
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
                                   pankha.api_seconds(a, 'ttl_seconds', interval '5 minutes', 1, 366 * 86400),
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
'POST /api/v1/agents/{agent_id}/commands (operator): queues command_type with parameters (priority, ttl_seconds default 300, max_attempts) and answers the command as pankha.api_command() shows it.';

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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
RETURN pankha.api_fleet_command(ui_user, ui_role, args, 'emergency_stop');
REVOKE ALL ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) TO pankha_bridge;
COMMENT ON FUNCTION pankha.api_emergency_stop(text, text, jsonb) IS
'POST /api/v1/emergency-stop (operator): queues emergency_stop (high priority, ttl_seconds default 600) to agent_id, every agent of group, or with fleet true every agent; confirm must repeat the target (the agent id, the group name or "fleet").  Answers {command_type, target, commands_queued, command_ids (the first 1000), command_ids_truncated}.';

CREATE FUNCTION pankha.api_restore_auto(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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
SET search_path = pg_catalog, pankha
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

CREATE OR REPLACE FUNCTION pankha.add_alert_rule(name text, condition text, threshold real DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION pankha.evaluate_alerts(OUT fired integer, OUT resolved integer)
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
-- end of API (issue 11)

-- ingest: control characters are refused by one locale-independent rule in C
-- and SQL, and frames may be given as bytes, so that a NUL byte or invalid
-- text refuses its own frame and not the whole ingest_many call (L1).
CREATE OR REPLACE FUNCTION pankha.valid_id(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN octet_length(id) BETWEEN 1 AND 64 AND id !~ '[\u0001-\u001f\u007f-\u009f]';

CREATE FUNCTION pankha.ingest_many(agent_ids text[], frames bytea[],
    OUT ord integer, OUT stored boolean, OUT sqlstate text, OUT message text,
    OUT detail text)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pankha_ingest_many';
COMMENT ON FUNCTION pankha.ingest_many(text[], bytea[]) IS
'pankha.ingest_many() for frames given as the bytes received (JSON text in the database encoding): a frame with a NUL byte or invalid text is refused alone, where as text it would fail the whole call.';
ALTER FUNCTION pankha.ingest_many(text[], bytea[]) SECURITY DEFINER SET search_path = pg_catalog, pankha;
REVOKE ALL ON FUNCTION pankha.ingest_many(text[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.ingest_many(text[], bytea[]) TO pankha_bridge;

-- ingest: payloads carry only their frame's sensors and fans (M10), and the
-- fan status words the dictionary lacks; ingest no longer adds to it (M9).
DROP FUNCTION pankha._fan_status_code(text);
COMMENT ON TABLE pankha.fan_statuses IS
'Fan status words with the one-byte code payloads store them as; other words are carried in the payload itself. Codes never change meaning.';

-- M1, SQL side (issue 13): no command or settings change made through a
-- bridge lowers a fan's floor ------------------------------------------
CREATE FUNCTION pankha.session_is_admin() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
RETURN pg_catalog.pg_has_role(session_user,
    (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pankha'), 'USAGE');
COMMENT ON FUNCTION pankha.session_is_admin() IS
'Internal: true when the session user has the privileges of the extension''s owner (an administrator).';

REVOKE ALL ON FUNCTION pankha.session_is_admin() FROM PUBLIC;
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

REVOKE ALL ON FUNCTION pankha.check_settings_safety(text, jsonb) FROM PUBLIC;
CREATE OR REPLACE FUNCTION pankha.check_command(agent_id text, command_type text, parameters jsonb)
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

CREATE OR REPLACE FUNCTION pankha.queue_settings_updates(before jsonb) RETURNS integer
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

REVOKE EXECUTE ON FUNCTION pankha.set_fan_limits(text, text, real, real, real, text) FROM pankha_bridge;

-- M5, SQL side (issue 13): refusals counted per address and minute ------
-- M5 (issue 13): refusals that anyone can cause without a credential (a
-- refused WebSocket handshake, a request with a bad token) are counted, not
-- logged one row each, so that an anonymous flood cannot fill the disk:
-- one auth.failed row per client address and minute, whose details hold the
-- count, the count per kind and reason, and up to 8 of the agent ids
-- claimed.  agent_id is set while every refusal of the row claimed the same.
CREATE INDEX audit_log_refusals_idx ON pankha.audit_log (client_addr, logged_at)
    WHERE event = 'auth.failed';

CREATE FUNCTION pankha.audit_refusal(kind text, agent_id text, reason text, client_addr text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    addr text := coalesce(client_addr, nullif(current_setting('pankha_audit.client_addr', true), ''),
                          host(inet_client_addr()));
    minute timestamptz := date_trunc('minute', clock_timestamp());
    what text := kind || ': ' || coalesce(reason, 'refused');
    claimed text := left(audit_refusal.agent_id, 64);
    row_id bigint;
BEGIN
    -- One writer per address and minute, so that there is one row.
    PERFORM pg_advisory_xact_lock(hashtext('pankha.audit_refusal'),
                                  hashtext(coalesce(addr, '') || '@' || minute::text));
    SELECT a.audit_id INTO row_id FROM pankha.audit_log a
     WHERE a.event = 'auth.failed' AND a.client_addr IS NOT DISTINCT FROM addr
       AND a.logged_at >= minute AND a.logged_at < minute + interval '1 minute'
       AND a.details ? 'count'
     ORDER BY a.audit_id LIMIT 1;
    IF row_id IS NULL THEN
        PERFORM pankha.audit('auth.failed', claimed,
                             jsonb_build_object('count', 1, 'minute', minute,
                                                'reasons', jsonb_build_object(what, 1),
                                                'agent_ids', CASE WHEN claimed IS NULL THEN '[]'::jsonb
                                                                 ELSE jsonb_build_array(claimed) END),
                             addr);
        RETURN;
    END IF;
    UPDATE pankha.audit_log a
       SET agent_id = CASE WHEN a.agent_id IS NOT DISTINCT FROM claimed THEN a.agent_id END,
           details = a.details
               || jsonb_build_object('count', (a.details ->> 'count')::bigint + 1)
               || jsonb_build_object('reasons', a.details -> 'reasons'
                      || jsonb_build_object(what, coalesce((a.details -> 'reasons' ->> what)::bigint, 0) + 1))
               || CASE WHEN claimed IS NULL OR a.details -> 'agent_ids' ? claimed
                            OR jsonb_array_length(a.details -> 'agent_ids') >= 8 THEN '{}'::jsonb
                       ELSE jsonb_build_object('agent_ids', a.details -> 'agent_ids' || to_jsonb(claimed)) END
     WHERE a.audit_id = row_id;
END
$$;
COMMENT ON FUNCTION pankha.audit_refusal(text, text, text, text) IS
'Internal: counts one refused credential (kind, claimed agent id, reason) in the auth.failed row of its client address and minute, creating the row for the first.';

-- record_handshakes with its refusals counted by pankha.audit_refusal: what
-- a bridge calls for the WebSocket handshakes it answered from its copy of
-- the credentials (same arguments and result).
CREATE FUNCTION pankha.record_refusals(used_token_ids bigint[], failed_kinds text[],
                                       failed_agent_ids text[], failed_tokens text[],
                                       failed_addrs text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    f record;
    found_token record;
    reason text;
    n integer := 0;
BEGIN
    IF cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_agent_ids)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_tokens)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_addrs) THEN
        RAISE EXCEPTION 'the failed_* arrays of pankha.record_refusals differ in length'
            USING ERRCODE = 'array_subscript_error',
                  DETAIL = 'Each refused handshake has one element in each of them, NULL where unknown.';
    END IF;
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = ANY (used_token_ids) AND t.kind IN ('agent', 'ui');
    FOR f IN SELECT * FROM unnest(failed_kinds, failed_agent_ids, failed_tokens, failed_addrs)
                           AS u(kind, agent_id, token, client_addr)
             ORDER BY u.client_addr
    LOOP
        IF f.kind IS NULL OR f.kind NOT IN ('agent', 'ui') THEN
            RAISE EXCEPTION 'invalid kind "%" of a refused handshake', f.kind
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'kind is agent or ui.';
        END IF;
        found_token := pankha.check_token(f.kind, f.token);
        reason := found_token.reason;
        IF found_token.token_id IS NOT NULL THEN
            IF f.kind = 'agent' AND NOT EXISTS (SELECT FROM pankha.tokens t
                                                WHERE t.token_id = found_token.token_id
                                                  AND t.agent_id = f.agent_id) THEN
                reason := 'token of another agent';
            ELSE
                reason := 'token not yet known to the bridge';
            END IF;
        END IF;
        PERFORM pankha.audit_refusal(f.kind, CASE WHEN f.kind = 'agent' THEN f.agent_id END,
                                     reason, f.client_addr);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.record_refusals(bigint[], text[], text[], text[], text[]) IS
'For bridges: pankha.record_handshakes with the refusals counted per client address and minute (one auth.failed row each, with a count) instead of one row per refusal; returns how many refusals it counted.';

-- authenticate_ui for requests anyone can send (HTTP API): a bad token is
-- counted by pankha.audit_refusal instead of logged one row each.
CREATE FUNCTION pankha.authenticate_ui_request(token text, client_addr text DEFAULT NULL)
RETURNS TABLE (user_name text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
BEGIN
    found_token := pankha.check_token('ui', token);
    IF found_token.token_id IS NULL THEN
        PERFORM pankha.audit_refusal('ui', NULL, found_token.reason, client_addr);
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = found_token.token_id
    RETURNING t.user_name, t.role;
END
$$;
COMMENT ON FUNCTION pankha.authenticate_ui_request(text, text) IS
'pankha.authenticate_ui with a refused token counted per client address and minute (pankha.audit_refusal) instead of one audit row per request.';

REVOKE ALL ON FUNCTION pankha.audit_refusal(text, text, text, text),
                       pankha.record_refusals(bigint[], text[], text[], text[], text[]),
                       pankha.authenticate_ui_request(text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.record_refusals(bigint[], text[], text[], text[], text[]),
                          pankha.authenticate_ui_request(text, text)
    TO pankha_bridge;


-- L8 (issue 13): the archive is on disk before its partition is dropped --
CREATE OR REPLACE FUNCTION pankha.archive_partition(part regclass, directory text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part);
    target text;
    quoted text;
    quoted_dir text;
BEGIN
    IF directory IS NULL OR directory !~ '^/' THEN
        RAISE EXCEPTION 'pankha.archive_directory must be an absolute path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is "%s".', directory);
    END IF;
    target := rtrim(directory, '/') || '/' || name || '.csv.gz';
    -- Single-quote the path for the shell: ' becomes '"'"'.
    quoted := '''' || replace(target, '''', '''"''"''') || '''';
    quoted_dir := '''' || replace(coalesce(nullif(rtrim(directory, '/'), ''), '/'), '''', '''"''"''') || '''';
    EXECUTE format('COPY %s TO PROGRAM %L WITH (FORMAT csv, HEADER)', part,
                   format('gzip -c > %s.part && sync %s.part && mv -f %s.part %s && sync %s',
                          quoted, quoted, quoted, quoted, quoted_dir));
    RETURN target;
END
$$;
-- ---------------------------------------------------------------------
-- dump and restore
--
-- The partitioned tables readings, rollup_1m and rollup_1h lose their
-- keys and indexes; every partition holds its own instead (see the comment
-- on pankha.readings in 00_schema.sql), so that pg_restore of a pg_dump
-- re-creates each partition's keys once.  Existing partitions are detached
-- first, which leaves each with its primary key and BRIN index as its own
-- objects under the names they had, then attached again to the key-less
-- parents.  Attaching reads each partition once to check its range.
-- ---------------------------------------------------------------------
DO $$
DECLARE
    parts text[];
    stmt text;
BEGIN
    SELECT array_agg(format('ALTER TABLE %s ATTACH PARTITION %s %s', i.inhparent::regclass,
                            i.inhrelid::regclass, pg_catalog.pg_get_expr(c.relpartbound, c.oid)))
      INTO parts
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent IN ('pankha.readings'::regclass, 'pankha.rollup_1m'::regclass,
                           'pankha.rollup_1h'::regclass);
    FOR stmt IN SELECT format('ALTER TABLE %s DETACH PARTITION %s', i.inhparent::regclass, i.inhrelid::regclass)
                  FROM pg_catalog.pg_inherits i
                 WHERE i.inhparent IN ('pankha.readings'::regclass, 'pankha.rollup_1m'::regclass,
                                       'pankha.rollup_1h'::regclass) LOOP
        EXECUTE stmt;
    END LOOP;
    ALTER TABLE pankha.readings DROP CONSTRAINT readings_pkey;
    DROP INDEX pankha.readings_received_at;
    ALTER TABLE pankha.rollup_1m DROP CONSTRAINT rollup_1m_pkey;
    ALTER TABLE pankha.rollup_1h DROP CONSTRAINT rollup_1h_pkey;
    FOREACH stmt IN ARRAY coalesce(parts, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
END
$$;

-- pg_dump keeps the connection history and the agents' latest reports.
SELECT pg_catalog.pg_extension_config_dump('pankha.connections', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pankha.connections', 'connection_id'), '');
SELECT pg_catalog.pg_extension_config_dump('pankha.agent_reports', '');

CREATE OR REPLACE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamp := date_trunc(unit, ts AT TIME ZONE 'UTC');
    hi timestamp := lo + ('1 ' || unit)::interval;
    name text := parent || '_' || to_char(lo, CASE unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
    rel regclass := to_regclass(format('pankha.%I', name));
BEGIN
    IF unit NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'invalid partition unit "%"', unit
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The unit is day or month.';
    END IF;
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pankha partitions'));
    -- Read pg_class itself, not the cache: an advisory lock does not bring
    -- in the invalidations of a partition another session just created.
    SELECT c.oid::regclass INTO rel FROM pg_catalog.pg_class c
    WHERE c.relname = name AND c.relnamespace = 'pankha'::regnamespace;
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE pankha.%I PARTITION OF pankha.%I FOR VALUES FROM (%L) TO (%L)',
                       name, parent, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        IF parent = 'readings' THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)',
                           name, name || '_pkey');
            EXECUTE format('CREATE INDEX %I ON pankha.%I USING brin (received_at) WITH (pages_per_range = 16, autosummarize = on)',
                           name || '_received_at_idx', name);
        ELSIF parent IN ('rollup_1m', 'rollup_1h') THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, bucket, kind, slot)',
                           name, name || '_pkey');
        END IF;
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;

CREATE OR REPLACE FUNCTION pankha.rollup_minutes(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    -- Replace rather than upsert: ON CONFLICT needs a key on the parent,
    -- which the partitioned tables do not have (see pankha.readings).  One
    -- rollup pass runs at a time (pankha.rollup() locks rollup_state), so
    -- nobody else writes these buckets in between.
    DELETE FROM pankha.rollup_1m m
     USING unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
     WHERE m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi;
    INSERT INTO pankha.rollup_1m
    SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, v.kind, v.slot,
           count(v.value), min(v.value), max(v.value), sum(v.value),
           (array_agg(v.value ORDER BY r.ts DESC))[1], max(r.ts),
           count(v.speed), min(v.speed), max(v.speed), sum(v.speed),
           count(*) FILTER (WHERE v.kind = 'f' AND ((v.value = 0 AND v.speed > 0) OR v.status = 'stalled')),
           (array_agg(v.status ORDER BY r.ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    JOIN pankha.readings r ON r.agent_id = d.agent_id AND r.ts >= d.lo AND r.ts < d.hi
    CROSS JOIN LATERAL pankha.payload_values(r.payload) v
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION pankha.rollup_hours(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    -- Replaced, not upserted, as in pankha.rollup_minutes().
    DELETE FROM pankha.rollup_1h h
     USING unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
     WHERE h.agent_id = d.agent_id AND h.bucket >= d.lo AND h.bucket < d.hi;
    INSERT INTO pankha.rollup_1h
    SELECT m.agent_id, date_bin('1 hour', m.bucket, pankha.bucket_origin()) AS bucket, m.kind, m.slot,
           sum(m.samples), min(m.min), max(m.max), sum(m.sum),
           (array_agg(m.last ORDER BY m.last_ts DESC))[1], max(m.last_ts),
           sum(m.speed_samples), min(m.speed_min), max(m.speed_max), sum(m.speed_sum),
           sum(m.stalls), (array_agg(m.last_status ORDER BY m.last_ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    JOIN pankha.rollup_1m m ON m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------
-- retention
--
-- What grows row by row is pruned by the worker after a pankha.*_retention
-- setting each: finished commands, closed connections, resolved alerts and
-- stale alert state, stale status reports, and the new record of dropped
-- partitions (pankha.archived_partitions).
-- ---------------------------------------------------------------------
CREATE TABLE pankha.archived_partitions (
    partition   text NOT NULL,
    parent      text NOT NULL,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL,
    bytes       bigint NOT NULL,
    archived_to text,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, dropped_at)
);
CREATE INDEX archived_partitions_dropped_at ON pankha.archived_partitions (dropped_at);
SELECT pg_catalog.pg_extension_config_dump('pankha.archived_partitions', '');
COMMENT ON TABLE pankha.archived_partitions IS
'Every partition the worker dropped past its retention: the range it covered, its size, the archive file it was written to first (NULL when not archived) and when.  Pruned after pankha.archive_log_retention.';

CREATE OR REPLACE FUNCTION pankha.drop_expired_partitions(OUT partition text, OUT archived_to text)
RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    directory text := coalesce(current_setting('pankha.archive_directory', true), '');
    old_lock_timeout text := current_setting('lock_timeout');
    pending boolean;
BEGIN
    -- Never stall ingest behind a drop's lock: give up and retry next pass.
    PERFORM set_config('lock_timeout', '2s', true);
    FOR p IN
        SELECT t.partition, t.parent, t.range_start, t.range_end, t.bytes FROM pankha.time_partitions t
        WHERE t.range_end <= now() - pankha.retention(t.parent)
        ORDER BY t.range_start
    LOOP
        -- Raw frames not yet rolled up wait for the next rollup pass.
        IF p.parent = 'readings' THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s r WHERE r.received_at >= $1)', p.partition)
                INTO pending USING (SELECT s.watermark FROM pankha.rollup_state s);
            CONTINUE WHEN pending;
        END IF;
        BEGIN
            archived_to := NULL;
            IF directory <> '' THEN
                archived_to := pankha.archive_partition(p.partition, directory);
            END IF;
            partition := p.partition::text;
            EXECUTE format('DROP TABLE %s', p.partition);
            INSERT INTO pankha.archived_partitions (partition, parent, range_start, range_end, bytes, archived_to)
            VALUES (partition, p.parent, p.range_start, p.range_end, p.bytes, archived_to);
            RAISE LOG 'pankha: dropped partition % past its retention%', partition,
                coalesce(' (archived to ' || archived_to || ')', '');
            RETURN NEXT;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha: partition % was not dropped: %', p.partition, SQLERRM
                USING DETAIL = 'It is kept and tried again on the next pass.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', old_lock_timeout, true);
END
$$;

CREATE FUNCTION pankha.prune_connections() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.connections c
     WHERE c.closed_at < now() - pankha.setting_interval('pankha.connection_retention', '30 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_connections() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_connections() IS
'Deletes the connections closed longer than pankha.connection_retention ago (open ones are kept) and returns how many.  The worker calls it.';

CREATE FUNCTION pankha.prune_alerts() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    keep interval := pankha.setting_interval('pankha.alert_retention', '180 days');
    n bigint;
BEGIN
    DELETE FROM pankha.alerts a
     WHERE a.state = 'resolved' AND a.resolved_at < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM pankha.alert_state s
     USING pankha.alert_rules r
     WHERE r.rule_id = s.rule_id AND s.pending_since IS NULL AND s.alert_id IS NULL
       AND coalesce(s.last_resolved_at, '-infinity') < now() - greatest(keep, r.cooldown);
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_alerts() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_alerts() IS
'Deletes the alerts resolved longer than pankha.alert_retention ago (firing ones are kept) and the alert state no rule needs any more; returns the alerts deleted.  The worker calls it.';

CREATE FUNCTION pankha.prune_agent_reports() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.agent_reports r
     WHERE r.received_at < now() - pankha.setting_interval('pankha.report_retention', '30 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_agent_reports() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_agent_reports() IS
'Deletes the status reports older than pankha.report_retention (agents silent that long) and returns how many.  The worker calls it.';

CREATE FUNCTION pankha.prune_archived_partitions() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM pankha.archived_partitions a
     WHERE a.dropped_at < now() - pankha.setting_interval('pankha.archive_log_retention', '730 days');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.prune_archived_partitions() FROM PUBLIC;
COMMENT ON FUNCTION pankha.prune_archived_partitions() IS
'Deletes the rows of pankha.archived_partitions older than pankha.archive_log_retention (the archive files themselves are the operator''s) and returns how many.  The worker calls it.';

CREATE OR REPLACE FUNCTION pankha.maintain() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    step text;
BEGIN
    FOREACH step IN ARRAY ARRAY[
        'SELECT count(*) FROM pankha.update_agent_status()',
        'SELECT pankha.ensure_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.ensure_rollup_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.rollup()',
        'SELECT count(*) FROM pankha.drop_expired_partitions()',
        'SELECT pankha.prune_audit_log()',
        'SELECT pankha.requeue_commands()',
        'SELECT pankha.evaluate_alerts()',
        'SELECT pankha.prune_commands(pankha.setting_interval(''pankha.command_retention'', ''30 days''))',
        'SELECT pankha.prune_connections()',
        'SELECT pankha.prune_alerts()',
        'SELECT pankha.prune_agent_reports()',
        'SELECT pankha.prune_archived_partitions()']
    LOOP
        BEGIN
            EXECUTE step;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha maintenance step failed: %', SQLERRM
                USING DETAIL = format('The step was: %s', step),
                      HINT = 'It is tried again on the next pass.';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.maintain() IS
'One maintenance pass of the background worker: persist liveness and mark agents online or offline, keep partitions ahead, roll up new frames, drop (and archive) partitions past retention, prune the audit log, expire and redeliver commands, judge alert rules, and prune finished commands, closed connections, resolved alerts, stale status reports and the record of dropped partitions past their pankha.*_retention.';

-- ---------------------------------------------------------------------
-- ingest with dump and restore: the index of frames from agents whose
-- clock is ahead is per partition too, like every key of the partitioned
-- tables, so that pg_restore creates it once.
-- ---------------------------------------------------------------------
DROP INDEX pankha.readings_ahead;
CREATE OR REPLACE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamp := date_trunc(unit, ts AT TIME ZONE 'UTC');
    hi timestamp := lo + ('1 ' || unit)::interval;
    name text := parent || '_' || to_char(lo, CASE unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
    rel regclass := to_regclass(format('pankha.%I', name));
BEGIN
    IF unit NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'invalid partition unit "%"', unit
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The unit is day or month.';
    END IF;
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pankha partitions'));
    -- Read pg_class itself, not the cache: an advisory lock does not bring
    -- in the invalidations of a partition another session just created.
    SELECT c.oid::regclass INTO rel FROM pg_catalog.pg_class c
    WHERE c.relname = name AND c.relnamespace = 'pankha'::regnamespace;
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE pankha.%I PARTITION OF pankha.%I FOR VALUES FROM (%L) TO (%L)',
                       name, parent, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        IF parent = 'readings' THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)',
                           name, name || '_pkey');
            EXECUTE format('CREATE INDEX %I ON pankha.%I USING brin (received_at) WITH (pages_per_range = 16, autosummarize = on)',
                           name || '_received_at_idx', name);
            EXECUTE format('CREATE INDEX %I ON pankha.%I (agent_id, agent_ts) WHERE agent_ts IS NOT NULL',
                           name || '_agent_id_agent_ts_idx', name);
        ELSIF parent IN ('rollup_1m', 'rollup_1h') THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, bucket, kind, slot)',
                           name, name || '_pkey');
        END IF;
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
                 WHERE i.inhparent = 'pankha.readings'::regclass LOOP
        EXECUTE format('CREATE INDEX %I ON %s (agent_id, agent_ts) WHERE agent_ts IS NOT NULL',
                       (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part) || '_agent_id_agent_ts_idx', part);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------
-- privileges, again for the worker's functions the features above replaced
-- after the privileges section pinned their search_path (L7).
-- ---------------------------------------------------------------------
ALTER FUNCTION pankha.maintain() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.drop_expired_partitions() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_hours(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------
-- 85_live.sql: live data across bridges (live_watches), the audit log on NOTIFY
-- ---------------------------------------------------------------------
CREATE TABLE pankha.live_watches (
    bridge_id  text NOT NULL CHECK (length(bridge_id) BETWEEN 1 AND 128),
    topic      text NOT NULL CHECK (topic = 'global' OR topic ~ '^(agents|groups)\.'),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (bridge_id, topic)
);
COMMENT ON TABLE pankha.live_watches IS
'The topics the dashboards of each bridge subscribe to, until expires_at (pankha.live_watch); ingest announces the frames of the agents they name on NOTIFY pankha_live.';

CREATE FUNCTION pankha.live_watch(bridge text, topics text[], ttl interval DEFAULT interval '30 seconds')
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    bad text;
    n integer;
BEGIN
    IF bridge IS NULL OR length(bridge) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'bridge: must be 1 to 128 characters' USING ERRCODE = '22023', COLUMN = 'bridge';
    END IF;
    IF topics IS NULL OR cardinality(topics) > 10000 THEN
        RAISE EXCEPTION 'topics: must be an array of at most 10000 topics' USING ERRCODE = '22023', COLUMN = 'topics';
    END IF;
    IF ttl IS NULL OR ttl < interval '1 second' OR ttl > interval '1 hour' THEN
        RAISE EXCEPTION 'ttl: must be between 1 second and 1 hour' USING ERRCODE = '22023', COLUMN = 'ttl';
    END IF;
    SELECT t INTO bad FROM unnest(topics) t
     WHERE t IS NULL OR NOT (t = 'global'
                             OR (t ~ '^(agents|groups)\.' AND pankha.valid_id(substr(t, 8))))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'topics: "%" is not "global", "agents.<id>" or "groups.<name>"', coalesce(bad, 'null')
            USING ERRCODE = '22023', COLUMN = 'topics';
    END IF;
    DELETE FROM pankha.live_watches w
     WHERE w.expires_at < now() OR (w.bridge_id = bridge AND w.topic <> ALL (topics));
    INSERT INTO pankha.live_watches AS w (bridge_id, topic, expires_at)
    SELECT DISTINCT bridge, t, now() + ttl FROM unnest(topics) t
    ON CONFLICT (bridge_id, topic) DO UPDATE SET expires_at = EXCLUDED.expires_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pankha.live_watch(text, text[], interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.live_watch(text, text[], interval) TO pankha_bridge;
COMMENT ON FUNCTION pankha.live_watch(text, text[], interval) IS
'A bridge''s topics with live subscribers ("global", "agents.<id>", "groups.<name>"), which replace those it recorded before, for ttl (1 second to 1 hour; the bridge calls it again before then).  An empty array forgets the bridge.  Expired rows of every bridge are removed.  Returns how many topics the bridge now watches.';

CREATE FUNCTION pankha.live_watched(except_bridge text)
RETURNS TABLE (agent_id text, group_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pankha
AS $$
    SELECT substr(w.topic, 8), m.group_name
      FROM pankha.live_watches w
      LEFT JOIN pankha.agent_group_members m ON m.agent_id = substr(w.topic, 8)
     WHERE w.topic LIKE 'agents.%' AND w.expires_at > now()
       AND w.bridge_id IS DISTINCT FROM except_bridge
    UNION
    SELECT m.agent_id, m.group_name
      FROM pankha.live_watches w
      JOIN pankha.agent_group_members m ON w.topic = 'groups.' || m.group_name
     WHERE w.expires_at > now() AND w.bridge_id IS DISTINCT FROM except_bridge
    UNION
    SELECT '*', NULL
     WHERE EXISTS (SELECT FROM pankha.live_watches w
                    WHERE w.topic = 'global' AND w.expires_at > now()
                      AND w.bridge_id IS DISTINCT FROM except_bridge)
$$;
REVOKE ALL ON FUNCTION pankha.live_watched(text) FROM PUBLIC;
COMMENT ON FUNCTION pankha.live_watched(text) IS
'Internal (ingest): the agents whose frames bridges other than except_bridge watch, with their group; agent_id "*" when one subscribes to every agent.';

CREATE FUNCTION pankha.audit_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    msg jsonb := jsonb_build_object('audit_id', NEW.audit_id, 'logged_at', NEW.logged_at, 'event', NEW.event,
                                    'agent_id', NEW.agent_id, 'ui_user', NEW.ui_user, 'db_role', NEW.db_role,
                                    'application_name', NEW.application_name,
                                    'client_addr', NEW.client_addr, 'details', NEW.details);
BEGIN
    -- NOTIFY takes under 8000 bytes: a row with large details goes without them
    IF octet_length(msg::text) > 7800 THEN
        msg := msg || jsonb_build_object('details', NULL, 'details_omitted', true);
    END IF;
    PERFORM pg_notify('pankha_audit', msg::text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pankha.audit_notify() FROM PUBLIC;
COMMENT ON FUNCTION pankha.audit_notify() IS
'Trigger: NOTIFY pankha_audit with each new audit row, shaped as an item of pankha.api_audit (without details over NOTIFY''s size limit, then details_omitted is true).';
CREATE TRIGGER audit_log_notify AFTER INSERT ON pankha.audit_log
    FOR EACH ROW EXECUTE FUNCTION pankha.audit_notify();

-- api_send_command's ttl_seconds at most 360 days, the limit of send_command
-- (interval '1 year' is 360 days) and of the bridge's /ws/ui command.
CREATE OR REPLACE FUNCTION pankha.api_send_command(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
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
COMMENT ON FUNCTION pankha.api_send_command(text, text, jsonb) IS
'POST /api/v1/agents/{agent_id}/commands (operator): queues command_type with parameters (priority, ttl_seconds default 300 and at most 360 days as pankha.send_command takes, max_attempts) and answers the command as pankha.api_command() shows it.';

-- What a bridge's /metrics and /readyz show of the whole fleet, in one call
-- every few seconds (the bridge reads no table itself).
CREATE FUNCTION pankha.bridge_stats() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
SELECT jsonb_build_object(
    'agents_registered', (SELECT count(*) FROM pankha.agents),
    'agents_online', (SELECT count(*) FROM pankha.agents a WHERE a.status = 'online'),
    'sensors', (SELECT count(*) FROM pankha.sensors),
    'fans', (SELECT count(*) FROM pankha.fans),
    'commands', (SELECT coalesce(jsonb_object_agg(c.status, c.n), '{}')
                   FROM (SELECT x.status, count(*) AS n FROM pankha.commands x GROUP BY x.status) c),
    'worker_running', (SELECT w.pid IS NOT NULL FROM pankha.worker_status w LIMIT 1),
    'worker_last_pass', (SELECT w.last_pass FROM pankha.worker_status w LIMIT 1),
    'worker_seconds_since_pass', (SELECT extract(epoch FROM now() - w.last_pass)::double precision
                                    FROM pankha.worker_status w LIMIT 1))
$$;
REVOKE ALL ON FUNCTION pankha.bridge_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.bridge_stats() TO pankha_bridge;
COMMENT ON FUNCTION pankha.bridge_stats() IS
'For the bridges'' /metrics and /readyz: agents registered and online, sensors and fans, commands by status (those kept: expired, dead and failed among them), and the worker''s state and last pass (pankha.worker_status).';

-- ---------------------------------------------------------------------
-- M5 (issue 13), bridge side: the bridge's own functions count refusals per
-- client address and minute (pankha.audit_refusal); the copies that did so
-- beside them are gone.
-- ---------------------------------------------------------------------
DROP FUNCTION pankha.record_refusals(bigint[], text[], text[], text[], text[]);
DROP FUNCTION pankha.authenticate_ui_request(text, text);
CREATE OR REPLACE FUNCTION pankha.authenticate_agent(agent_id text, token text, client_addr text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
    reason text;
BEGIN
    found_token := pankha.check_token('agent', token);
    reason := found_token.reason;
    IF found_token.token_id IS NOT NULL THEN
        UPDATE pankha.tokens t SET last_used_at = now()
        WHERE t.token_id = found_token.token_id AND t.agent_id = authenticate_agent.agent_id;
        IF FOUND THEN
            RETURN agent_id;
        END IF;
        reason := 'token of another agent';
    END IF;
    PERFORM pankha.audit_refusal('agent', agent_id, reason, client_addr);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pankha.authenticate_agent(text, text, text) IS
'The agent id when the token is a live token of that agent, else NULL (and the failure is counted in the auth.failed row of the client address and minute).';
CREATE OR REPLACE FUNCTION pankha.authenticate_ui(token text, client_addr text DEFAULT NULL)
RETURNS TABLE (user_name text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    found_token record;
BEGIN
    found_token := pankha.check_token('ui', token);
    IF found_token.token_id IS NULL THEN
        PERFORM pankha.audit_refusal('ui', NULL, found_token.reason, client_addr);
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = found_token.token_id
    RETURNING t.user_name, t.role;
END
$$;
COMMENT ON FUNCTION pankha.authenticate_ui(text, text) IS
'The dashboard user and role for a live ui token; no row otherwise (the failure counted in the auth.failed row of the client address and minute).';
CREATE OR REPLACE FUNCTION pankha.record_handshakes(used_token_ids bigint[], failed_kinds text[],
                                         failed_agent_ids text[], failed_tokens text[],
                                         failed_addrs text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    f record;
    found_token record;
    reason text;
    n integer := 0;
BEGIN
    IF cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_agent_ids)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_tokens)
       OR cardinality(failed_kinds) IS DISTINCT FROM cardinality(failed_addrs) THEN
        RAISE EXCEPTION 'the failed_* arrays of pankha.record_handshakes differ in length'
            USING ERRCODE = 'array_subscript_error',
                  DETAIL = 'Each refused handshake has one element in each of them, NULL where unknown.';
    END IF;
    UPDATE pankha.tokens t SET last_used_at = now()
    WHERE t.token_id = ANY (used_token_ids) AND t.kind IN ('agent', 'ui');
    FOR f IN SELECT * FROM unnest(failed_kinds, failed_agent_ids, failed_tokens, failed_addrs)
                           AS u(kind, agent_id, token, client_addr)
             ORDER BY u.client_addr
    LOOP
        IF f.kind IS NULL OR f.kind NOT IN ('agent', 'ui') THEN
            RAISE EXCEPTION 'invalid kind "%" of a refused handshake', f.kind
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'kind is agent or ui.';
        END IF;
        found_token := pankha.check_token(f.kind, f.token);
        reason := found_token.reason;
        IF found_token.token_id IS NOT NULL THEN
            -- live in the database: another agent's, or newer than the bridge's copy
            IF f.kind = 'agent' AND NOT EXISTS (SELECT FROM pankha.tokens t
                                                WHERE t.token_id = found_token.token_id
                                                  AND t.agent_id = f.agent_id) THEN
                reason := 'token of another agent';
            ELSE
                reason := 'token not yet known to the bridge';
            END IF;
        END IF;
        PERFORM pankha.audit_refusal(f.kind, CASE WHEN f.kind = 'agent' THEN f.agent_id END,
                                     reason, f.client_addr);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.record_handshakes(bigint[], text[], text[], text[], text[]) IS
'For bridges: sets last_used_at of the tokens used in accepted handshakes and counts each refused one (kind agent or ui, agent id, presented token, client address) as authenticate_agent or authenticate_ui would: one auth.failed row per client address and minute, with a count; returns how many refusals it counted.';

-- ---------------------------------------------------------------------
-- bridge heartbeats (issue 17): pankha.bridges, bridge_beat, expire_bridges,
-- and the worker's pass closing the connections of silent bridges.
-- ---------------------------------------------------------------------

CREATE TABLE pankha.bridges (
    bridge_id     text PRIMARY KEY CHECK (bridge_id <> '' AND octet_length(bridge_id) <= 128),
    instance      text NOT NULL CHECK (instance <> '' AND octet_length(instance) <= 128),
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_beat     timestamptz NOT NULL DEFAULT clock_timestamp(),
    beat_interval interval NOT NULL CHECK (beat_interval > interval '0'),
    expired_at    timestamptz,
    expired_connections integer NOT NULL DEFAULT 0 CHECK (expired_connections >= 0)
);
SELECT pg_catalog.pg_extension_config_dump('pankha.bridges', '');
COMMENT ON TABLE pankha.bridges IS
'One row per bridge (by bridge id): the run now beating under that id (instance), when it started and last beat, and how often it beats.  expired_at is set when it stopped beating and its open connections were closed for it.';

-- How long the database has been able to hear beats: since the server
-- started, or since it was promoted (the newest timeline history file).
-- A bridge is only judged silent for a time the server was there to hear
-- it, so a restart or a failover does not expire every bridge at once.
CREATE FUNCTION pankha.beats_heard_since() RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    since    timestamptz := pg_postmaster_start_time();
    promoted timestamptz;
BEGIN
    BEGIN
        SELECT max(w.modification) INTO promoted
          FROM pg_ls_waldir() w WHERE w.name LIKE '%.history';
    EXCEPTION WHEN insufficient_privilege THEN
        promoted := NULL;       -- an owner without pg_monitor: start time only
    END;
    RETURN greatest(since, promoted);
END
$$;
REVOKE ALL ON FUNCTION pankha.beats_heard_since() FROM PUBLIC;
COMMENT ON FUNCTION pankha.beats_heard_since() IS
'Since when this server could hear bridge heartbeats: its start, or its promotion from standby when later.';

-- expire_bridges: close the open connections of every bridge that missed
-- three beats (plus two seconds of slack) while the server was listening.
-- After a restart or a promotion every bridge has 10 s more than that to
-- come back (its reconnect back-off reaches 5 s), so the server must have
-- been up for three beats + 12 s before it judges anyone.
CREATE FUNCTION pankha.expire_bridges() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b      record;
    stale  bigint;
    n      integer;
    total  integer := 0;
    heard  timestamptz := pankha.beats_heard_since();
BEGIN
    FOR b IN SELECT r.bridge_id, r.beat_interval * 3 + interval '2 seconds' AS dead_after
               FROM pankha.bridges r
              WHERE r.expired_at IS NULL
                AND r.last_beat < clock_timestamp() - (r.beat_interval * 3 + interval '2 seconds')
                AND heard < clock_timestamp() - (r.beat_interval * 3 + interval '12 seconds')
                FOR UPDATE SKIP LOCKED
    LOOP
        n := 0;
        FOR stale IN SELECT c.connection_id FROM pankha.connections c
                      WHERE c.bridge_id = b.bridge_id AND c.closed_at IS NULL
        LOOP
            IF pankha.connection_closed(stale, 1006, 'bridge stopped beating') THEN
                n := n + 1;
            END IF;
        END LOOP;
        UPDATE pankha.bridges r SET expired_at = clock_timestamp(), expired_connections = n
         WHERE r.bridge_id = b.bridge_id;
        IF n > 0 THEN
            RAISE LOG 'pankha: bridge "%" stopped beating; closed its % open connections',
                b.bridge_id, n;
        END IF;
        total := total + n;
    END LOOP;
    -- a bridge gone for a week is forgotten
    DELETE FROM pankha.bridges r
     WHERE r.expired_at IS NOT NULL AND r.last_beat < clock_timestamp() - interval '7 days';
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION pankha.expire_bridges() FROM PUBLIC;
COMMENT ON FUNCTION pankha.expire_bridges() IS
'Closes (code 1006, "bridge stopped beating") the open connections of each bridge that missed three heartbeats plus two seconds, once this server has been up (or promoted) for three of its heartbeats plus 12 s, and marks it expired; returns how many connections it closed.  The worker and every bridge heartbeat call it.';

-- bridge_beat: a bridge says it is alive.  instance names this run of the
-- bridge (a new one under an old id starts afresh).  expired is true when
-- this very run had been declared dead (its database connection was away
-- longer than its beats allow) and its connections closed: the bridge
-- must then drop its agents so they connect, and are recorded, again.
-- closed is what this beat closed for other, silent bridges.
CREATE FUNCTION pankha.bridge_beat(bridge_id text, instance text, beat_interval_ms integer DEFAULT 5000,
                                   OUT expired boolean, OUT closed integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev pankha.bridges;
BEGIN
    IF bridge_id IS NULL OR bridge_id = '' OR octet_length(bridge_id) > 128 THEN
        RAISE EXCEPTION 'bridge_id must be 1 to 128 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF instance IS NULL OR instance = '' OR octet_length(instance) > 128 THEN
        RAISE EXCEPTION 'instance must be 1 to 128 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF beat_interval_ms IS NULL OR beat_interval_ms < 100 OR beat_interval_ms > 600000 THEN
        RAISE EXCEPTION 'beat_interval_ms must be between 100 and 600000, not %', beat_interval_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO prev FROM pankha.bridges r WHERE r.bridge_id = bridge_beat.bridge_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pankha.bridges (bridge_id, instance, beat_interval)
        VALUES (bridge_id, instance, beat_interval_ms * interval '1 millisecond')
        ON CONFLICT DO NOTHING;
        expired := false;
    ELSE
        expired := prev.instance = instance AND prev.expired_at IS NOT NULL;
        UPDATE pankha.bridges r
           SET last_beat = clock_timestamp(),
               beat_interval = beat_interval_ms * interval '1 millisecond',
               instance = bridge_beat.instance,
               started_at = CASE WHEN prev.instance = bridge_beat.instance THEN r.started_at
                                 ELSE clock_timestamp() END,
               expired_at = NULL,
               expired_connections = 0
         WHERE r.bridge_id = bridge_beat.bridge_id;
    END IF;
    closed := pankha.expire_bridges();
END
$$;
COMMENT ON FUNCTION pankha.bridge_beat(text, text, integer) IS
'A bridge''s heartbeat: records that run instance of bridge bridge_id is alive and beats every beat_interval_ms, then closes the connections of bridges that stopped beating.  expired is true when this run had itself been declared dead (it must drop its agents so they reconnect); closed counts the connections closed for others.';

CREATE VIEW pankha.bridge_status AS
SELECT r.bridge_id, r.instance, r.started_at, r.last_beat, r.beat_interval,
       r.expired_at IS NULL AND r.last_beat >= clock_timestamp() - (r.beat_interval * 3 + interval '2 seconds') AS alive,
       (SELECT count(*) FROM pankha.connections c
         WHERE c.bridge_id = r.bridge_id AND c.closed_at IS NULL) AS open_connections,
       r.expired_at, r.expired_connections
  FROM pankha.bridges r;
COMMENT ON VIEW pankha.bridge_status IS
'Each bridge known from its heartbeats: alive when it beat within three intervals (plus two seconds), with its open connections.';

REVOKE ALL ON FUNCTION pankha.bridge_beat(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.bridge_beat(text, text, integer) TO pankha_bridge;
GRANT SELECT ON pankha.bridge_status TO pankha_reader;

CREATE OR REPLACE FUNCTION pankha.maintain() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step text;
BEGIN
    FOREACH step IN ARRAY ARRAY[
        'SELECT count(*) FROM pankha.update_agent_status()',
        'SELECT pankha.expire_bridges()',
        'SELECT pankha.ensure_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.ensure_rollup_partitions(now() - interval ''1 day'', now() + interval ''2 days'')',
        'SELECT pankha.rollup()',
        'SELECT count(*) FROM pankha.drop_expired_partitions()',
        'SELECT pankha.prune_audit_log()',
        'SELECT pankha.requeue_commands()',
        'SELECT pankha.evaluate_alerts()',
        'SELECT pankha.prune_commands(pankha.setting_interval(''pankha.command_retention'', ''30 days''))',
        'SELECT pankha.prune_connections()',
        'SELECT pankha.prune_alerts()',
        'SELECT pankha.prune_agent_reports()',
        'SELECT pankha.prune_archived_partitions()']
    LOOP
        BEGIN
            EXECUTE step;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha maintenance step failed: %', SQLERRM
                USING DETAIL = format('The step was: %s', step),
                      HINT = 'It is tried again on the next pass.';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pankha.maintain() IS
'One maintenance pass of the background worker: persist liveness and mark agents online or offline, close the connections of bridges that stopped beating, keep partitions ahead, roll up new frames, drop (and archive) partitions past retention, prune the audit log, expire and redeliver commands, judge alert rules, and prune finished commands, closed connections, resolved alerts, stale status reports and the record of dropped partitions past their pankha.*_retention.';
ALTER FUNCTION pankha.maintain() SET search_path = pg_catalog, pg_temp;

-- the worker's offline judgement counts silence from the server's start or
-- promotion (issue 17: no storm of false offline events after a failover)
CREATE OR REPLACE FUNCTION pankha.update_agent_status(OUT agent_id text, OUT status text)
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
COMMENT ON FUNCTION pankha.update_agent_status() IS
'Persist liveness from shared memory, mark online the offline agents that sent a frame since, and offline the online ones silent past pankha.offline_threshold() (silence counted from the start or promotion of the server at the earliest); NOTIFYs pankha_agent_status for each and returns the changes.  The worker calls it.';

-- check_keys: a command that takes no parameters says so (test audit 16)
CREATE OR REPLACE FUNCTION pankha.check_keys(what text, obj jsonb, allowed text[]) RETURNS void
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

-- ---------------------------------------------------------------------
-- Compressed cold storage (issue 16): pankha.frames_cold, its codec and
-- pass; the readers of frames read the compressed ones too.
-- ---------------------------------------------------------------------


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

CREATE FUNCTION pankha.newest_frame(agent text,
    OUT ts timestamptz, OUT received_at timestamptz, OUT agent_id text, OUT payload bytea,
    OUT agent_ts timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE ROWS 1
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT f.ts, f.received_at, f.agent_id, f.payload, f.agent_ts
    FROM ((SELECT r.ts, r.received_at, r.agent_id, r.payload, r.agent_ts
           FROM pankha.readings r WHERE r.agent_id = newest_frame.agent
           ORDER BY r.ts DESC LIMIT 1)
          UNION ALL
          (SELECT u.ts, u.received_at, c.agent_id, u.payload, NULL::timestamptz
           FROM (SELECT c.* FROM pankha.frames_cold c WHERE c.agent_id = newest_frame.agent
                 ORDER BY c.hour DESC LIMIT 1) c
           CROSS JOIN LATERAL pankha.cold_frames(c.packed, c.last_ts, 'infinity') u
           WHERE c.last_ts > coalesce((SELECT max(r.ts) FROM pankha.readings r
                                       WHERE r.agent_id = newest_frame.agent), '-infinity'))) f
    ORDER BY f.ts DESC LIMIT 1;
END;
COMMENT ON FUNCTION pankha.newest_frame(text) IS
'The newest frame of an agent (none when it has none), raw or compressed, with the columns of pankha.readings.';

CREATE OR REPLACE VIEW pankha.sensor_readings AS
SELECT r.agent_id, r.ts, s.sensor_id, d.temperature
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_temperatures(r.payload) d
JOIN pankha.sensors s ON s.agent_id = r.agent_id AND s.slot = d.slot;

CREATE OR REPLACE VIEW pankha.fan_readings AS
SELECT r.agent_id, r.ts, f.fan_id, d.rpm, d.speed, d.target_speed, d.status
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_fans(r.payload) d
JOIN pankha.fans f ON f.agent_id = r.agent_id AND f.slot = d.slot;

CREATE OR REPLACE VIEW pankha.health_readings AS
SELECT r.agent_id, r.ts, h.*
FROM pankha.frames r
CROSS JOIN LATERAL pankha.decode_health(r.payload) h;

CREATE OR REPLACE VIEW pankha.latest AS
SELECT a.agent_id, a.name, r.ts, r.received_at, pankha.decode_seq(r.payload) AS seq,
       (SELECT jsonb_object_agg(s.sensor_id, d.temperature)
        FROM pankha.decode_temperatures(r.payload) d
        JOIN pankha.sensors s ON s.agent_id = r.agent_id AND s.slot = d.slot) AS temperatures,
       (SELECT jsonb_object_agg(f.fan_id, jsonb_strip_nulls(jsonb_build_object(
                   'rpm', d.rpm, 'speed', d.speed, 'target_speed', d.target_speed, 'status', d.status)))
        FROM pankha.decode_fans(r.payload) d
        JOIN pankha.fans f ON f.agent_id = r.agent_id AND f.slot = d.slot) AS fans,
       h.cpu_usage, h.memory_usage, h.agent_uptime, h.disk_usage,
       h.net_rx_bytes_per_sec, h.net_tx_bytes_per_sec, h.load1
FROM pankha.agents a
CROSS JOIN LATERAL pankha.newest_frame(a.agent_id) r
CROSS JOIN LATERAL pankha.decode_health(r.payload) h;

CREATE OR REPLACE FUNCTION pankha._forget_agent_readings() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pankha.readings WHERE agent_id = OLD.agent_id;
    DELETE FROM pankha.frames_cold WHERE agent_id = OLD.agent_id;
    RETURN OLD;
END
$$;

CREATE OR REPLACE FUNCTION pankha.rollup_minutes(agent_ids text[], from_ts timestamptz[], to_ts timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    -- Replace rather than upsert: ON CONFLICT needs a key on the parent,
    -- which the partitioned tables do not have (see pankha.readings).  One
    -- rollup pass runs at a time (pankha.rollup() locks rollup_state), so
    -- nobody else writes these buckets in between.
    DELETE FROM pankha.rollup_1m m
     USING unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
     WHERE m.agent_id = d.agent_id AND m.bucket >= d.lo AND m.bucket < d.hi;
    INSERT INTO pankha.rollup_1m
    SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, v.kind, v.slot,
           count(v.value), min(v.value), max(v.value), sum(v.value),
           (array_agg(v.value ORDER BY r.ts DESC))[1], max(r.ts),
           count(v.speed), min(v.speed), max(v.speed), sum(v.speed),
           count(*) FILTER (WHERE v.kind = 'f' AND ((v.value = 0 AND v.speed > 0) OR v.status = 'stalled')),
           (array_agg(v.status ORDER BY r.ts DESC))[1]
    FROM unnest(agent_ids, from_ts, to_ts) AS d(agent_id, lo, hi)
    CROSS JOIN LATERAL (
        SELECT x.agent_id, x.ts, x.payload FROM pankha.readings x
        WHERE x.agent_id = d.agent_id AND x.ts >= d.lo AND x.ts < d.hi
        UNION ALL
        SELECT c.agent_id, u.ts, u.payload FROM pankha.frames_cold c
        CROSS JOIN LATERAL pankha.cold_frames(c.packed, d.lo, d.hi) u
        WHERE c.agent_id = d.agent_id AND c.hour > d.lo - interval '1 hour' AND c.hour < d.hi) r
    CROSS JOIN LATERAL pankha.payload_values(r.payload) v
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) IS
'Internal: recompute the 1-minute rollups of the given stretches (agent, from, to; whole minutes) from the raw and compressed frames; returns the rows written.';

CREATE OR REPLACE FUNCTION pankha.rollup(force_hours boolean DEFAULT false,
    OUT frames bigint, OUT minutes bigint, OUT hours bigint, OUT watermark timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st pankha.rollup_state;
    horizon timestamptz;
    agent_ids text[];
    los timestamptz[];
    his timestamptz[];
    lo timestamptz;
    hi timestamptz;
BEGIN
    -- One rollup pass at a time; a second caller waits for the first.
    SELECT * INTO st FROM pankha.rollup_state FOR UPDATE;
    horizon := pankha.rollup_horizon();
    -- The clock went back since the last pass: frames stored meanwhile got
    -- received_at values below the watermark, so read that stretch again.
    IF st.last_pass > now() THEN
        RAISE LOG 'pankha: the clock went back by %; rolling up again from % on',
            st.last_pass - now(), st.watermark - (st.last_pass - now()) - interval '1 second';
        st.watermark := st.watermark - (st.last_pass - now()) - interval '1 second';
    END IF;
    frames := 0;
    minutes := 0;
    hours := 0;

    IF horizon > st.watermark THEN
        -- The minutes touched by frames stored since the watermark, merged
        -- into stretches of consecutive minutes per agent.
        WITH touched AS (
            SELECT r.agent_id, date_bin('1 minute', r.ts, pankha.bucket_origin()) AS bucket, count(*) AS n
            FROM (SELECT r.agent_id, r.ts FROM pankha.readings r
                  WHERE r.received_at >= st.watermark AND r.received_at < horizon
                  UNION ALL
                  -- compressed frames are rolled up before they are packed:
                  -- found here only when the watermark is set back (a rebuild)
                  SELECT c.agent_id, u.ts FROM pankha.frames_cold c
                  CROSS JOIN LATERAL pankha.cold_frames(c.packed) u
                  WHERE c.received_max >= st.watermark
                    AND u.received_at >= st.watermark AND u.received_at < horizon) r
            GROUP BY 1, 2
        ), stretches AS (
            SELECT t.agent_id, min(t.bucket) AS lo, max(t.bucket) + interval '1 minute' AS hi, sum(t.n) AS n
            FROM (SELECT t.*, t.bucket - interval '1 minute' * row_number() OVER (PARTITION BY t.agent_id ORDER BY t.bucket) AS island
                  FROM touched t) t
            GROUP BY t.agent_id, t.island
        )
        SELECT array_agg(x.agent_id), array_agg(x.lo), array_agg(x.hi), min(x.lo), max(x.hi),
               coalesce(sum(x.n), 0)
        INTO agent_ids, los, his, lo, hi, frames
        FROM stretches x;
        IF agent_ids IS NOT NULL THEN
            PERFORM pankha.ensure_rollup_partitions(lo, hi);
            minutes := pankha.rollup_minutes(agent_ids, los, his);
            INSERT INTO pankha.rollup_pending_hours
            SELECT DISTINCT u.agent_id, h
            FROM unnest(agent_ids, los, his) AS u(agent_id, lo, hi),
                 generate_series(date_bin('1 hour', u.lo, pankha.bucket_origin()),
                                 u.hi - interval '1 microsecond', interval '1 hour') AS h
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE pankha.rollup_state SET watermark = horizon, last_pass = now();
        st.watermark := horizon;
    END IF;

    IF force_hours OR st.last_hours IS NULL
       OR st.last_hours <= now() - pankha.setting_interval('pankha.rollup_hour_delay', '1 minute') THEN
        WITH done AS (
            DELETE FROM pankha.rollup_pending_hours RETURNING agent_id, bucket
        ), stretches AS (
            SELECT d.agent_id, min(d.bucket) AS lo, max(d.bucket) + interval '1 hour' AS hi
            FROM (SELECT d.*, d.bucket - interval '1 hour' * row_number() OVER (PARTITION BY d.agent_id ORDER BY d.bucket) AS island
                  FROM done d) d
            GROUP BY d.agent_id, d.island
        )
        SELECT array_agg(x.agent_id), array_agg(x.lo), array_agg(x.hi) INTO agent_ids, los, his
        FROM stretches x;
        IF agent_ids IS NOT NULL THEN
            hours := pankha.rollup_hours(agent_ids, los, his);
        END IF;
        UPDATE pankha.rollup_state SET last_hours = now();
    END IF;
    watermark := st.watermark;
END
$$;
COMMENT ON FUNCTION pankha.rollup(boolean) IS
'One incremental rollup pass (the worker runs it): recompute the 1-minute buckets touched by frames stored since the watermark, late frames included, and the queued hours when pankha.rollup_hour_delay has passed (or force_hours).  Returns the frames read, rows written and the new watermark.';

CREATE OR REPLACE FUNCTION pankha.rollup_rebuild() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM pankha.rollup_state FOR UPDATE;
    UPDATE pankha.rollup_state SET watermark = '-infinity';
    SELECT (pankha.rollup(true)).frames INTO n;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pankha.rollup_rebuild() IS
'Recompute the rollups of every frame still kept, raw or compressed (e.g. after restoring raw data); returns the frames read.  Rollups of older, dropped raw data are kept.';

CREATE OR REPLACE FUNCTION pankha.history(agent_id text, series text, from_ts timestamptz, to_ts timestamptz,
                               resolution interval DEFAULT NULL)
RETURNS TABLE (bucket timestamptz, min real, max real, avg double precision, samples bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    source text := pankha.history_source(from_ts, to_ts, resolution);
    s record;
    width interval;
BEGIN
    s := pankha.find_series(agent_id, series);
    IF source = 'raw' THEN
        RETURN QUERY
        SELECT CASE WHEN resolution IS NULL THEN r.ts
                    ELSE date_bin(resolution, r.ts, pankha.bucket_origin()) END AS b,
               min(v.value)::real, max(v.value)::real, avg(v.value), count(v.value)
        FROM (SELECT x.ts, x.payload FROM pankha.readings x
              WHERE x.agent_id = history.agent_id AND x.ts >= from_ts AND x.ts < to_ts
              UNION ALL
              SELECT u.ts, u.payload FROM pankha.frames_cold c
              CROSS JOIN LATERAL pankha.cold_frames(c.packed, from_ts, to_ts) u
              WHERE c.agent_id = history.agent_id
                AND c.hour > from_ts - interval '1 hour' AND c.hour < to_ts) r
        CROSS JOIN LATERAL pankha.payload_values(r.payload) v
        WHERE v.kind = s.kind AND v.slot = s.slot AND v.value IS NOT NULL
        GROUP BY b ORDER BY b;
        RETURN;
    END IF;

    width := source::interval;
    resolution := coalesce(resolution, width);
    IF source = '1 minute' THEN
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1m m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    ELSE
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1h m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.history(text, text, timestamptz, timestamptz, interval) IS
'History of one sensor (degrees Celsius), fan (rpm) or health metric of an agent between from_ts and to_ts: one row per bucket with min, max, avg and the number of samples.  Without a resolution the data is picked from the span: every raw frame up to 2 hours, 1-minute rollups up to 3 days, 1-hour rollups beyond; with one (e.g. ''5 minutes''), buckets of that width.  Rollup buckets overlapping the range are included whole.';

CREATE OR REPLACE FUNCTION pankha.archive_partition(part regclass, directory text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = part);
    target text;
    quoted text;
    quoted_dir text;
    tp record;
    source text := part::text;
BEGIN
    IF directory IS NULL OR directory !~ '^/' THEN
        RAISE EXCEPTION 'pankha.archive_directory must be an absolute path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is "%s".', directory);
    END IF;
    target := rtrim(directory, '/') || '/' || name || '.csv.gz';
    -- Single-quote the path for the shell: ' becomes '"'"'.
    quoted := '''' || replace(target, '''', '''"''"''') || '''';
    quoted_dir := '''' || replace(coalesce(nullif(rtrim(directory, '/'), ''), '/'), '''', '''"''"''') || '''';
    -- A day of frames is archived whole: its raw rows and its compressed hours.
    SELECT t.parent, t.range_start, t.range_end INTO tp FROM pankha.time_partitions t
     WHERE t.partition = part;
    IF tp.parent = 'readings' THEN
        source := format('(SELECT r.ts, r.received_at, r.agent_id, r.payload, r.agent_ts FROM %s r '
                         'UNION ALL SELECT u.ts, u.received_at, c.agent_id, u.payload, NULL '
                         'FROM pankha.frames_cold c CROSS JOIN LATERAL pankha.cold_frames(c.packed) u '
                         'WHERE c.hour >= %L AND c.hour < %L)', part, tp.range_start, tp.range_end);
    END IF;
    EXECUTE format('COPY %s TO PROGRAM %L WITH (FORMAT csv, HEADER)', source,
                   format('gzip -c > %s.part && sync %s.part && mv -f %s.part %s && sync %s',
                          quoted, quoted, quoted, quoted, quoted_dir));
    RETURN target;
END
$$;
COMMENT ON FUNCTION pankha.archive_partition(regclass, text) IS
'Write a partition to directory/<partition>.csv.gz (gzip-compressed CSV with a header) with COPY TO PROGRAM, as the server user; a day of pankha.readings is written with its compressed frames.  Returns the file name; raises an error when it could not.';

CREATE OR REPLACE FUNCTION pankha.drop_expired_partitions(OUT partition text, OUT archived_to text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    directory text := coalesce(current_setting('pankha.archive_directory', true), '');
    old_lock_timeout text := current_setting('lock_timeout');
    pending boolean;
BEGIN
    -- Never stall ingest behind a drop's lock: give up and retry next pass.
    PERFORM set_config('lock_timeout', '2s', true);
    FOR p IN
        SELECT t.partition, t.parent, t.range_start, t.range_end, t.bytes FROM pankha.time_partitions t
        WHERE t.range_end <= now() - pankha.retention(t.parent)
        ORDER BY t.range_start
    LOOP
        -- Raw frames not yet rolled up wait for the next rollup pass.
        IF p.parent = 'readings' THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s r WHERE r.received_at >= $1)', p.partition)
                INTO pending USING (SELECT s.watermark FROM pankha.rollup_state s);
            CONTINUE WHEN pending;
        END IF;
        BEGIN
            archived_to := NULL;
            IF directory <> '' THEN
                archived_to := pankha.archive_partition(p.partition, directory);
            END IF;
            partition := p.partition::text;
            EXECUTE format('DROP TABLE %s', p.partition);
            IF p.parent = 'readings' THEN
                DELETE FROM pankha.frames_cold c
                 WHERE c.hour >= p.range_start AND c.hour < p.range_end;
            END IF;
            INSERT INTO pankha.archived_partitions (partition, parent, range_start, range_end, bytes, archived_to)
            VALUES (partition, p.parent, p.range_start, p.range_end, p.bytes, archived_to);
            RAISE LOG 'pankha: dropped partition % past its retention%', partition,
                coalesce(' (archived to ' || archived_to || ')', '');
            RETURN NEXT;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pankha: partition % was not dropped: %', p.partition, SQLERRM
                USING DETAIL = 'It is kept and tried again on the next pass.';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', old_lock_timeout, true);
END
$$;
COMMENT ON FUNCTION pankha.drop_expired_partitions() IS
'Drop the time partitions past their retention (archived first when pankha.archive_directory is set), raw ones only once their frames are rolled up and with their compressed frames; returns what was dropped and where it was archived.  The worker calls it.';


-- Where the pass stops: the start of the current UTC day by default, a
-- whole hour pankha.compress_after ago when that is set, NULL (no pass)
-- when it is negative.
CREATE FUNCTION pankha.compress_cutoff() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE
    WHEN pankha.setting_interval('pankha.compress_after', '0') < interval '0' THEN NULL
    WHEN pankha.setting_interval('pankha.compress_after', '0') = interval '0'
        THEN date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
    ELSE date_bin('1 hour', now() - pankha.setting_interval('pankha.compress_after', '0'),
                  pankha.bucket_origin())
END;
COMMENT ON FUNCTION pankha.compress_cutoff() IS
'The time before which frames are compressed, from pankha.compress_after: the start of the current UTC day when it is 0 (the default), a whole hour that long ago otherwise, NULL when it is negative (compression off).';

-- On the partitions that have compressed hours: a frame already packed is
-- not stored again (ingest then counts it as stored).  The shared lock
-- waits for a pass packing this agent to commit, so the check sees its rows.
CREATE FUNCTION pankha._cold_dedup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.agent_ts IS NULL THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('pankha cold'), hashtext(NEW.agent_id));
        IF EXISTS (SELECT FROM pankha.frames_cold c
                    WHERE c.agent_id = NEW.agent_id
                      AND c.hour = date_bin('1 hour', NEW.ts, pankha.bucket_origin())
                      AND NEW.ts BETWEEN c.first_ts AND c.last_ts
                      AND EXISTS (SELECT FROM pankha.cold_frames(c.packed, NEW.ts, NEW.ts + interval '1 microsecond'))) THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pankha._cold_dedup() IS
'Internal: trigger on the partitions of pankha.readings with compressed hours; skips a frame that is compressed already.';

-- Compress the frames before a time of one partition and up to max_agents
-- agents (the first, by agent_id, that have frames to pack): every raw
-- frame rolled up, with ts before before_ts and no agent_ts, goes into the
-- agent's row of its hour, merged with the frames already there.  Returns
-- the frames moved (0 when nothing is left).
CREATE FUNCTION pankha.compress_before(before_ts timestamptz, max_agents integer DEFAULT 16)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    wm timestamptz;
    agents text[];
    moved bigint;
    old_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF before_ts IS NULL THEN
        RETURN 0;
    END IF;
    IF max_agents IS NULL OR max_agents < 1 THEN
        RAISE EXCEPTION 'max_agents must be at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', max_agents);
    END IF;
    -- One pass at a time.
    PERFORM pg_advisory_xact_lock(hashtext('pankha cold pass'), 0);
    SELECT s.watermark INTO wm FROM pankha.rollup_state s;
    before_ts := date_bin('1 hour', least(before_ts, wm), pankha.bucket_origin());
    FOR p IN
        SELECT t.partition, t.range_start FROM pankha.time_partitions t
        WHERE t.parent = 'readings' AND t.range_start < before_ts
        ORDER BY t.range_start
    LOOP
        -- The agents with frames to pack, by a walk over the primary key.
        EXECUTE format($q$
            WITH RECURSIVE a AS (
                (SELECT r.agent_id FROM %1$s r
                  WHERE r.ts < $1 AND r.agent_ts IS NULL AND r.received_at < $2
                  ORDER BY r.agent_id LIMIT 1)
                UNION ALL
                SELECT (SELECT r.agent_id FROM %1$s r
                         WHERE r.agent_id > a.agent_id AND r.ts < $1 AND r.agent_ts IS NULL
                           AND r.received_at < $2
                         ORDER BY r.agent_id LIMIT 1)
                FROM a WHERE a.agent_id IS NOT NULL)
            SELECT array_agg(a.agent_id ORDER BY a.agent_id) FROM (SELECT * FROM a LIMIT $3) a
             WHERE a.agent_id IS NOT NULL$q$, p.partition)
            INTO agents USING before_ts, wm, max_agents;
        CONTINUE WHEN agents IS NULL;

        -- Late frames for these agents' packed hours wait for this to commit.
        PERFORM pg_advisory_xact_lock(hashtext('pankha cold'), l.h)
           FROM (SELECT DISTINCT hashtext(a) AS h FROM unnest(agents) a ORDER BY 1) l;
        -- A partition with packed hours refuses frames packed already.
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g
                        WHERE g.tgrelid = p.partition AND g.tgname = 'cold_dedup') THEN
            PERFORM set_config('lock_timeout', '2s', true);
            EXECUTE format('CREATE TRIGGER cold_dedup BEFORE INSERT ON %s '
                           'FOR EACH ROW EXECUTE FUNCTION pankha._cold_dedup()', p.partition);
            PERFORM set_config('lock_timeout', old_lock_timeout, true);
        END IF;

        EXECUTE format($q$
            WITH raw AS (
                DELETE FROM %s r
                 WHERE r.agent_id = ANY ($1) AND r.ts < $2 AND r.agent_ts IS NULL
                   AND r.received_at < $3
                RETURNING r.agent_id, r.ts, r.received_at, r.payload
            ), hours AS (
                SELECT DISTINCT r.agent_id, date_bin('1 hour', r.ts, pankha.bucket_origin()) AS hour
                FROM raw r
            ), old AS (
                DELETE FROM pankha.frames_cold c USING hours h
                 WHERE c.agent_id = h.agent_id AND c.hour = h.hour
                RETURNING c.agent_id, c.hour, c.packed
            ), merged AS (
                -- a frame in both (stored before the trigger was there) is kept once
                SELECT DISTINCT ON (f.agent_id, f.ts) f.*
                FROM (SELECT o.agent_id, o.hour, u.ts, u.received_at, u.payload, 0 AS src
                        FROM old o CROSS JOIN LATERAL pankha.cold_frames(o.packed) u
                      UNION ALL
                      SELECT r.agent_id, date_bin('1 hour', r.ts, pankha.bucket_origin()),
                             r.ts, r.received_at, r.payload, 1
                        FROM raw r) f
                ORDER BY f.agent_id, f.ts, f.src
            ), ins AS (
                INSERT INTO pankha.frames_cold (hour, first_ts, last_ts, received_max, frames, agent_id, packed)
                SELECT m.hour, min(m.ts), max(m.ts), max(m.received_at), count(*), m.agent_id,
                       pankha.cold_pack(array_agg(m.ts ORDER BY m.ts), array_agg(m.received_at ORDER BY m.ts),
                                        array_agg(m.payload ORDER BY m.ts))
                FROM merged m GROUP BY m.agent_id, m.hour
                RETURNING 1
            )
            SELECT count(*) FROM raw$q$, p.partition)
            INTO moved USING agents, before_ts, wm;
        RETURN moved;
    END LOOP;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION pankha.compress_before(timestamptz, integer) IS
'Compress the rolled-up raw frames with ts before before_ts (cut to a whole hour) of the oldest partition that has some and of up to max_agents agents into pankha.frames_cold, in the calling transaction; returns the frames moved, 0 when none are left.  The worker calls it until it returns 0, each call in its own transaction.';

-- One compression step of the worker, in the transaction it is called in.
CREATE FUNCTION pankha.compress_step() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
RETURN pankha.compress_before(pankha.compress_cutoff());
COMMENT ON FUNCTION pankha.compress_step() IS
'Internal: compress the next partition and range of agents before pankha.compress_cutoff(); returns the frames moved.  The worker calls it until it returns 0.';

-- Privileges (issue 13): the pass is the owner's; readers read the
-- compressed frames through pankha.frames and the reading views.
REVOKE ALL ON FUNCTION pankha.compress_cutoff(),
                       pankha._cold_dedup(),
                       pankha.compress_before(timestamptz, integer),
                       pankha.compress_step(),
                       pankha.newest_frame(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.newest_frame(text) TO pankha_reader;
GRANT SELECT ON pankha.frames, pankha.frames_cold TO pankha_reader;

ALTER FUNCTION pankha.rollup_minutes(text[], timestamptz[], timestamptz[]) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.rollup(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.archive_partition(regclass, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pankha.drop_expired_partitions() SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------
-- Partitions: one advisory lock per parent table, so that the worker's
-- rollup (which has read pankha.readings) and an ingest making a readings
-- partition do not deadlock (spec partition_deadlock).
-- ---------------------------------------------------------------------
CREATE OR REPLACE FUNCTION pankha.ensure_time_partition(parent text, unit text, ts timestamptz)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamp := date_trunc(unit, ts AT TIME ZONE 'UTC');
    hi timestamp := lo + ('1 ' || unit)::interval;
    name text := parent || '_' || to_char(lo, CASE unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
    rel regclass := to_regclass(format('pankha.%I', name));
BEGIN
    IF unit NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'invalid partition unit "%"', unit
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The unit is day or month.';
    END IF;
    IF rel IS NOT NULL THEN
        RETURN rel;
    END IF;
    -- One lock per parent: the worker's rollup reads pankha.readings and
    -- then makes rollup partitions, while an ingest making a readings
    -- partition waits for that read to end; with one lock for all parents
    -- the two waited for each other (spec partition_deadlock).
    PERFORM pg_advisory_xact_lock(hashtext('pankha partitions'), hashtext(parent));
    -- Read pg_class itself, not the cache: an advisory lock does not bring
    -- in the invalidations of a partition another session just created.
    SELECT c.oid::regclass INTO rel FROM pg_catalog.pg_class c
    WHERE c.relname = name AND c.relnamespace = 'pankha'::regnamespace;
    IF rel IS NULL THEN
        EXECUTE format('CREATE TABLE pankha.%I PARTITION OF pankha.%I FOR VALUES FROM (%L) TO (%L)',
                       name, parent, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        IF parent = 'readings' THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, ts) WITH (fillfactor = 100)',
                           name, name || '_pkey');
            EXECUTE format('CREATE INDEX %I ON pankha.%I USING brin (received_at) WITH (pages_per_range = 16, autosummarize = on)',
                           name || '_received_at_idx', name);
            EXECUTE format('CREATE INDEX %I ON pankha.%I (agent_id, agent_ts) WHERE agent_ts IS NOT NULL',
                           name || '_agent_id_agent_ts_idx', name);
        ELSIF parent IN ('rollup_1m', 'rollup_1h') THEN
            EXECUTE format('ALTER TABLE pankha.%I ADD CONSTRAINT %I PRIMARY KEY (agent_id, bucket, kind, slot)',
                           name, name || '_pkey');
        END IF;
        rel := to_regclass(format('pankha.%I', name));
    END IF;
    RETURN rel;
END
$$;

-- ---------------------------------------------------------------------
-- The fleet and agent endpoints take an agent's newest frame raw or
-- compressed (pankha.newest_frame), so an agent silent since before the
-- cold age still shows its last values.
-- ---------------------------------------------------------------------
CREATE OR REPLACE FUNCTION pankha.api_fleet(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
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

CREATE OR REPLACE FUNCTION pankha.api_agent(ui_user text, ui_role text, args jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pankha
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

-- The bridge records connections in batches (connect ramps, mass closes).

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

-- record_status returns how many more frames the agent reports as dropped
-- than its previous report did (the bridge counts them in /metrics): a new
-- return type, so the function is made again, with its grants.
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
DROP FUNCTION pankha.record_status(text, jsonb);
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
REVOKE ALL ON FUNCTION pankha.record_status(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pankha.record_status(text, jsonb) TO pankha_bridge;

-- connection_opened locks the agent's row FOR NO KEY UPDATE: FOR UPDATE waited
-- for ingest transactions holding KEY SHARE on it (a new sensor's foreign key).
CREATE OR REPLACE FUNCTION pankha.connection_opened(agent_id text, bridge_id text, remote_addr text DEFAULT NULL)
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

-- Compressed cold storage, second round (issue 16): blocks of version 2
-- (payload fields column-wise; version 1 blocks are still read), and
-- history reads one series of a compressed hour (pankha.cold_series).
CREATE FUNCTION pankha.cold_series(packed bytea, from_ts timestamptz, to_ts timestamptz,
    kind "char", slot smallint, OUT ts timestamptz, OUT value double precision)
RETURNS SETOF record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE ROWS 120 AS 'MODULE_PATHNAME', 'pankha_cold_series';
COMMENT ON FUNCTION pankha.cold_series(bytea, timestamptz, timestamptz, "char", smallint) IS
'One series of the frames of a block made by pankha.cold_pack(), those with from_ts <= ts < to_ts: the value pankha.payload_values() gives for that kind and slot, one row per frame that has it.';

CREATE OR REPLACE FUNCTION pankha.history(agent_id text, series text, from_ts timestamptz, to_ts timestamptz,
                               resolution interval DEFAULT NULL)
RETURNS TABLE (bucket timestamptz, min real, max real, avg double precision, samples bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pankha
AS $$
DECLARE
    source text := pankha.history_source(from_ts, to_ts, resolution);
    s record;
    width interval;
BEGIN
    s := pankha.find_series(agent_id, series);
    IF source = 'raw' THEN
        RETURN QUERY
        -- compressed hours give only this series' values (pankha.cold_series)
        SELECT CASE WHEN resolution IS NULL THEN r.ts
                    ELSE date_bin(resolution, r.ts, pankha.bucket_origin()) END AS b,
               min(r.value)::real, max(r.value)::real, avg(r.value), count(r.value)
        FROM (SELECT x.ts, v.value FROM pankha.readings x
              CROSS JOIN LATERAL pankha.payload_values(x.payload) v
              WHERE x.agent_id = history.agent_id AND x.ts >= from_ts AND x.ts < to_ts
                AND v.kind = s.kind AND v.slot = s.slot AND v.value IS NOT NULL
              UNION ALL
              SELECT u.ts, u.value FROM pankha.frames_cold c
              CROSS JOIN LATERAL pankha.cold_series(c.packed, from_ts, to_ts, s.kind, s.slot) u
              WHERE c.agent_id = history.agent_id
                AND c.hour > from_ts - interval '1 hour' AND c.hour < to_ts
                AND c.first_ts < to_ts AND c.last_ts >= from_ts) r
        GROUP BY b ORDER BY b;
        RETURN;
    END IF;

    width := source::interval;
    resolution := coalesce(resolution, width);
    IF source = '1 minute' THEN
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1m m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    ELSE
        RETURN QUERY
        SELECT date_bin(resolution, m.bucket, pankha.bucket_origin()) AS b,
               min(m.min), max(m.max), sum(m.sum) / sum(m.samples), sum(m.samples)
        FROM pankha.rollup_1h m
        WHERE m.agent_id = history.agent_id
          AND m.bucket > from_ts - width AND m.bucket < to_ts
          AND m.kind = s.kind AND m.slot = s.slot AND m.samples > 0
        GROUP BY b ORDER BY b;
    END IF;
END
$$;
COMMENT ON FUNCTION pankha.history(text, text, timestamptz, timestamptz, interval) IS
'History of one sensor (degrees Celsius), fan (rpm) or health metric of an agent between from_ts and to_ts: one row per bucket with min, max, avg and the number of samples.  Without a resolution the data is picked from the span: every raw frame up to 2 hours, 1-minute rollups up to 3 days, 1-hour rollups beyond; with one (e.g. ''5 minutes''), buckets of that width.  Rollup buckets overlapping the range are included whole.';

