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
