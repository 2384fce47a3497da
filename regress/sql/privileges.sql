-- Privileges (issue 13, findings H3, M8 and L7 of the 2026-12 review).
--
-- A bridge connects as a login role whose only privilege is membership in
-- pankha_bridge.  That role can call what a bridge calls and nothing else:
-- it cannot read token digests, write the audit log or the tables behind
-- the functions, or run the worker's functions.  Every function of the
-- extension is granted deliberately or revoked from PUBLIC: the list below
-- is compared with the catalog, so a new function fails this test until
-- its privileges are decided.
\i sql/queue_helpers.psql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_bridge_login;
DROP ROLE IF EXISTS regress_nobody;
DROP ROLE IF EXISTS regress_flusher;
RESET client_min_messages;
-- What an operator deploys (harness.py, scripts/demo and the benchmarks
-- create the same), and a role that is in no pankha role at all.
CREATE ROLE regress_bridge_login LOGIN IN ROLE pankha_bridge;
CREATE ROLE regress_nobody LOGIN;

-- Every function of schema pankha and who besides the owner may execute
-- it.  A difference is a row below; the "fix" column says what to do.
CREATE TEMP TABLE expected_acl (fn text PRIMARY KEY, grantees text NOT NULL);
INSERT INTO expected_acl VALUES
    -- PUBLIC: pure functions of their arguments: decoders, validators, constants
    ('pankha.bucket_origin()', 'PUBLIC'),
    ('pankha.decode_fans(bytea)', 'PUBLIC'),
    ('pankha.decode_health(bytea)', 'PUBLIC'),
    ('pankha.decode_seq(bytea)', 'PUBLIC'),
    ('pankha.decode_temperatures(bytea)', 'PUBLIC'),
    ('pankha.digest_equal(bytea,bytea)', 'PUBLIC'),
    ('pankha.health_metrics()', 'PUBLIC'),
    ('pankha.max_error_length()', 'PUBLIC'),
    ('pankha.payload_values(bytea)', 'PUBLIC'),
    ('pankha.random_token(text)', 'PUBLIC'),
    ('pankha.setting_interval(text,interval)', 'PUBLIC'),
    ('pankha.token_prefix(text)', 'PUBLIC'),
    ('pankha.valid_id(text)', 'PUBLIC'),
    -- pankha_reader: readers (Grafana, reports); the bridge through its membership
    ('pankha.agent_liveness()', 'pankha_reader'),
    ('pankha.audit_retention()', 'pankha_reader'),
    ('pankha.find_series(text,text)', 'pankha_reader'),
    ('pankha.history(text,text,timestamp with time zone,timestamp with time zone,interval)', 'pankha_reader'),
    ('pankha.history(text,text[],timestamp with time zone,timestamp with time zone,interval)', 'pankha_reader'),
    ('pankha.history_source(timestamp with time zone,timestamp with time zone,interval)', 'pankha_reader'),
    ('pankha.ingest_stats()', 'pankha_reader'),
    -- pankha_bridge,pankha_reader: both
    ('pankha.effective_settings(text)', 'pankha_bridge,pankha_reader'),
    -- pankha_bridge: what a bridge calls, or the operator actions it serves
    ('pankha.ack_command(text,uuid,boolean,text)', 'pankha_bridge'),
    ('pankha.agent_group(text)', 'pankha_bridge'),
    ('pankha.agent_sync(text,text,text,jsonb,jsonb)', 'pankha_bridge'),
    ('pankha.assign_profile(text,text,text,text,text)', 'pankha_bridge'),
    ('pankha.authenticate_agent(text,text,text)', 'pankha_bridge'),
    ('pankha.authenticate_ui(text,text)', 'pankha_bridge'),
    ('pankha.bridge_credentials(text[])', 'pankha_bridge'),
    ('pankha.bridge_started(text)', 'pankha_bridge'),
    ('pankha.bridge_beat(text,text,integer)', 'pankha_bridge'),
    ('pankha.claim_commands(text[],interval,integer)', 'pankha_bridge'),
    ('pankha.connection_closed(bigint,integer,text,bigint,bigint,bigint,bigint)', 'pankha_bridge'),
    ('pankha.connection_opened(text,text,text)', 'pankha_bridge'),
    ('pankha.connections_closed(bigint[],integer[],text[],bigint[],bigint[],bigint[],bigint[])', 'pankha_bridge'),
    ('pankha.connections_opened(text[],text,text[])', 'pankha_bridge'),
    ('pankha.create_profile(text,jsonb,real,real,text,text)', 'pankha_bridge'),
    ('pankha.delete_profile(text,text)', 'pankha_bridge'),
    ('pankha.enroll_agent(text,text,text,text,jsonb,text)', 'pankha_bridge'),
    ('pankha.ingest(text,jsonb)', 'pankha_bridge'),
    ('pankha.ingest(text,text)', 'pankha_bridge'),
    ('pankha.ingest_batch(text,jsonb)', 'pankha_bridge'),
    ('pankha.ingest_batch(text,text)', 'pankha_bridge'),
    ('pankha.ingest_many(text[],jsonb[])', 'pankha_bridge'),
    ('pankha.ingest_many(text[],text[])', 'pankha_bridge'),
    ('pankha.pending_commands(text,interval,integer)', 'pankha_bridge'),
    ('pankha.record_handshakes(bigint[],text[],text[],text[],text[])', 'pankha_bridge'),
    ('pankha.record_status(text,jsonb)', 'pankha_bridge'),
    ('pankha.reset_setting(text,text,text)', 'pankha_bridge'),
    ('pankha.send_command(text,text,jsonb,text,interval,text,integer)', 'pankha_bridge'),
    ('pankha.set_agent_group(text,text,text)', 'pankha_bridge'),
    ('pankha.set_setting(text,text,jsonb,text)', 'pankha_bridge'),
    ('pankha.try_enroll_agent(text,text,text,text,jsonb,text)', 'pankha_bridge'),
    ('pankha.unassign_profile(text,text,text)', 'pankha_bridge'),
    ('pankha.update_profile(text,jsonb,real,real,text)', 'pankha_bridge'),
    -- owner: the owner only: the worker, administration, helpers of SECURITY DEFINER functions
    ('pankha._catalog_add(text[],"char"[],text[],text[],real[],real[])', 'owner'),
    ('pankha._catalog_changed()', 'owner'),
    ('pankha._forget_agent_readings()', 'owner'),
    ('pankha.add_alert_rule(text,text,real,interval,interval,text,text,text,text,text)', 'owner'),
    ('pankha.agent_in_group(text,text)', 'owner'),
    ('pankha.agent_report(text,timestamp with time zone,timestamp with time zone)', 'owner'),
    ('pankha.alert_json(pankha.alerts)', 'owner'),
    ('pankha.alert_observations()', 'owner'),
    ('pankha.archive_partition(regclass,text)', 'owner'),
    ('pankha.audit(text,text,jsonb,text,text)', 'owner'),
    ('pankha.audit_change()', 'owner'),
    ('pankha.audit_refusal(text,text,text,text)', 'owner'),
    ('pankha.beats_heard_since()', 'owner'),
    ('pankha.check_agent(text)', 'owner'),
    ('pankha.check_agent_id(text)', 'owner'),
    ('pankha.check_command(text,text,jsonb)', 'owner'),
    ('pankha.check_keys(text,jsonb,text[])', 'owner'),
    ('pankha.check_profile_points(jsonb)', 'owner'),
    ('pankha.check_profile_tuning(real,real)', 'owner'),
    ('pankha.check_setting(text,jsonb,text)', 'owner'),
    ('pankha.check_settings_safety(text,jsonb)', 'owner'),
    ('pankha.check_settings(jsonb,text)', 'owner'),
    ('pankha.check_token(text,text)', 'owner'),
    ('pankha.command_finished(uuid,text,text,jsonb)', 'owner'),
    ('pankha.create_enrollment_key(text,interval,integer)', 'owner'),
    ('pankha.create_group(text,text,text)', 'owner'),
    ('pankha.create_ui_token(text,text)', 'owner'),
    ('pankha.delete_group(text,text)', 'owner'),
    ('pankha.drop_expired_partitions()', 'owner'),
    ('pankha.ensure_partition(timestamp with time zone)', 'owner'),
    ('pankha.ensure_partitions(timestamp with time zone,timestamp with time zone)', 'owner'),
    ('pankha.ensure_rollup_partitions(timestamp with time zone,timestamp with time zone)', 'owner'),
    ('pankha.ensure_time_partition(text,text,timestamp with time zone)', 'owner'),
    ('pankha.evaluate_alerts()', 'owner'),
    ('pankha.expire_commands()', 'owner'),
    ('pankha.expire_bridges()', 'owner'),
    ('pankha.find_fan(text,jsonb)', 'owner'),
    ('pankha.fleet_report(timestamp with time zone,timestamp with time zone)', 'owner'),
    ('pankha.flush_liveness()', 'owner'),
    ('pankha.insert_agent(text,text,text,jsonb)', 'owner'),
    ('pankha.issue_token(text,text,text,text,text,timestamp with time zone,integer)', 'owner'),
    ('pankha.lock_settings()', 'owner'),
    ('pankha.maintain()', 'owner'),
    ('pankha.offline_threshold(text)', 'owner'),
    ('pankha.parse_scope(text)', 'owner'),
    ('pankha.profile_parameters(text,jsonb,jsonb,jsonb)', 'owner'),
    ('pankha.prune_audit_log()', 'owner'),
    ('pankha.prune_commands(interval)', 'owner'),
    ('pankha.queue_settings_updates(jsonb)', 'owner'),
    ('pankha.reapply_profiles(text,text,text)', 'owner'),
    ('pankha.register_agent(text,text,text,jsonb)', 'owner'),
    ('pankha.requeue_commands()', 'owner'),
    ('pankha.retention(text)', 'owner'),
    ('pankha.revoke_agent_tokens(text)', 'owner'),
    ('pankha.revoke_token(bigint)', 'owner'),
    ('pankha.rollup(boolean)', 'owner'),
    ('pankha.rollup_horizon()', 'owner'),
    ('pankha.rollup_hours(text[],timestamp with time zone[],timestamp with time zone[])', 'owner'),
    ('pankha.rollup_minutes(text[],timestamp with time zone[],timestamp with time zone[])', 'owner'),
    ('pankha.rollup_rebuild()', 'owner'),
    ('pankha.rotate_agent_token(text)', 'owner'),
    ('pankha.scope_agents(text,text,text)', 'owner'),
    ('pankha.set_audit_retention(interval)', 'owner'),
    ('pankha.set_ui_user(text)', 'owner'),
    ('pankha.session_is_admin()', 'owner'),
    ('pankha.set_fan_limits(text,text,real,real,real,text)', 'owner'),
    ('pankha.settings_snapshot(text[])', 'owner'),
    ('pankha.status_dropped(jsonb)', 'owner'),
    ('pankha.supersede_commands(text,text,jsonb,uuid)', 'owner'),
    ('pankha.tokens_notify()', 'owner'),
    ('pankha.update_agent_status()', 'owner'),
    ('pankha.update_interval(text)', 'owner'),
    ('pankha.check_alert_rule(text,text,real,interval,interval,text,text,text,text,text)', 'owner'),
    ('pankha.ingest_many(text[],bytea[])', 'pankha_bridge'),
    ('pankha.prune_agent_reports()', 'owner'),
    ('pankha.prune_alerts()', 'owner'),
    ('pankha.prune_archived_partitions()', 'owner'),
    ('pankha.prune_connections()', 'owner'),
    -- cold storage (05_cold.sql, 57_cold.sql): the codec is pure, the pass the owner's
    ('pankha.cold_frames(bytea,timestamp with time zone,timestamp with time zone)', 'PUBLIC'),
    ('pankha.cold_pack(timestamp with time zone[],timestamp with time zone[],bytea[])', 'PUBLIC'),
    ('pankha.cold_series(bytea,timestamp with time zone,timestamp with time zone,"char",smallint)', 'PUBLIC'),
    ('pankha.newest_frame(text)', 'pankha_reader'),
    ('pankha._cold_dedup()', 'owner'),
    ('pankha.compress_before(timestamp with time zone,integer)', 'owner'),
    ('pankha.compress_cutoff()', 'owner'),
    ('pankha.compress_step()', 'owner'),
    -- the API (80_api.sql): endpoints for the bridge, their helpers the owner's
    ('pankha.alert_silenced_until(bigint,text,text)', 'owner'),
    ('pankha.api_agent(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_agent_id(jsonb,text,boolean)', 'owner'),
    ('pankha.api_agent_report(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_ack(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_json(pankha.alerts)', 'owner'),
    ('pankha.api_alert_rule_create(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_rule_delete(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_rule_field(text)', 'owner'),
    ('pankha.api_alert_rule_json(pankha.alert_rules)', 'owner'),
    ('pankha.api_alert_rule_update(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_rule_write(jsonb,bigint)', 'owner'),
    ('pankha.api_alert_rules(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_silence(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_silences(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alert_unsilence(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_alerts(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_args(jsonb)', 'owner'),
    ('pankha.api_audit(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_authorize(text,text,text,text)', 'owner'),
    ('pankha.api_bool(jsonb,text,boolean)', 'owner'),
    ('pankha.api_command(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_command_json(pankha.commands)', 'owner'),
    ('pankha.api_commands(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_cursor_in(jsonb,text[])', 'owner'),
    ('pankha.api_cursor_out(text[])', 'owner'),
    ('pankha.api_emergency_stop(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_enum(jsonb,text,text[],boolean)', 'owner'),
    ('pankha.api_fan_field(text)', 'owner'),
    ('pankha.api_fan_limits(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_fleet(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_fleet_command(text,text,jsonb,text)', 'owner'),
    ('pankha.api_fleet_report(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_frame_summary(text,timestamp with time zone,timestamp with time zone,bytea)', 'owner'),
    ('pankha.api_group_create(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_group_delete(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_group_json(text)', 'owner'),
    ('pankha.api_group_members(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_group_name(jsonb,text,boolean)', 'owner'),
    ('pankha.api_group_update(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_groups(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_has(jsonb,text)', 'owner'),
    ('pankha.api_history(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_id(jsonb,text,boolean)', 'owner'),
    ('pankha.api_int(jsonb,text,bigint,bigint,bigint,boolean)', 'owner'),
    ('pankha.api_limits()', 'pankha_bridge'),
    ('pankha.api_number(jsonb,text,numeric,numeric,boolean)', 'owner'),
    ('pankha.api_page(jsonb[],text[],integer)', 'owner'),
    ('pankha.api_page_size(jsonb,integer)', 'owner'),
    ('pankha.api_profile_apply(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_profile_assign(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_profile_create(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_profile_delete(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_profile_field(text)', 'owner'),
    ('pankha.api_profile_json(pankha.fan_profiles)', 'owner'),
    ('pankha.api_profile_update(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_profiles(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_raise(text,text,text,text)', 'owner'),
    ('pankha.api_report_range(jsonb)', 'owner'),
    ('pankha.api_reraise(text,text,text,text)', 'owner'),
    ('pankha.api_restore_auto(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_role_rank(text)', 'owner'),
    ('pankha.api_scope(jsonb)', 'owner'),
    ('pankha.api_seconds(jsonb,text,interval,numeric,numeric)', 'owner'),
    ('pankha.api_send_command(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_setting_definitions(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_setting_set(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_settings(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_settings_sources(text)', 'owner'),
    ('pankha.api_silence_json(pankha.alert_silences)', 'owner'),
    ('pankha.api_text(jsonb,text,boolean,integer)', 'owner'),
    ('pankha.api_time(jsonb,text,timestamp with time zone)', 'owner'),
    ('pankha.api_token_create(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_token_revoke(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_tokens(text,text,jsonb)', 'pankha_bridge'),
    ('pankha.api_uuid(jsonb,text,boolean)', 'owner'),
    -- live data across bridges and the audit NOTIFY (85_live.sql)
    ('pankha.audit_notify()', 'owner'),
    ('pankha.bridge_stats()', 'pankha_bridge'),
    ('pankha.live_watch(text,text[],interval)', 'pankha_bridge'),
    ('pankha.live_watched(text)', 'owner');
WITH actual AS (
    SELECT p.oid::regprocedure::text AS fn,
           coalesce((SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                       ',' ORDER BY 1)
                       FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner), 'owner') AS grantees
      FROM pg_proc p WHERE p.pronamespace = 'pankha'::regnamespace)
SELECT coalesce(a.fn, e.fn) AS function, a.grantees AS actual, e.grantees AS expected,
       CASE WHEN e.fn IS NULL THEN
                'new function: REVOKE ALL ON FUNCTION ... FROM PUBLIC in its part and in the upgrade script '
                '(or GRANT it deliberately), then add it to expected_acl in regress/sql/privileges.sql'
            WHEN a.fn IS NULL THEN 'gone or renamed: update expected_acl in regress/sql/privileges.sql'
            ELSE 'privileges changed: fix the GRANT/REVOKE (part and upgrade script), '
                 'or, if deliberate, expected_acl in regress/sql/privileges.sql'
       END AS fix
  FROM actual a FULL JOIN expected_acl e ON e.fn = a.fn
 WHERE a.grantees IS DISTINCT FROM e.grantees
 ORDER BY 1;

-- Tables and views: the bridge has no privilege of its own on any; what it
-- reads, it reads as a pankha_reader, and nobody but the owner writes.
SELECT c.relname, r.rolname,
       string_agg(a.privilege_type, ',' ORDER BY a.privilege_type) AS privileges
  FROM pg_class c, aclexplode(c.relacl) a, pg_roles r
 WHERE c.relnamespace = 'pankha'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND r.oid = a.grantee AND a.grantee <> c.relowner
 GROUP BY 1, 2 ORDER BY 2, 1;
SELECT count(*) AS partitions_with_grants
  FROM pg_class c, pg_inherits i
 WHERE i.inhrelid = c.oid AND c.relnamespace = 'pankha'::regnamespace AND c.relacl IS NOT NULL;

-- Functions that run with the caller's search_path: C functions, pure
-- functions of their arguments, audit_change (see 25_audit.sql) and helpers
-- only called by pinned functions.  Every other one pins search_path to
-- pg_catalog, pankha (SECURITY DEFINER) or pg_catalog, pg_temp (the
-- worker's, L7): the worker's superuser session must not resolve a name in
-- a schema someone else can create objects in.
SELECT p.oid::regprocedure AS unpinned, l.lanname
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'pankha'::regnamespace
   AND (p.proconfig IS NULL OR NOT (p.proconfig && ARRAY['search_path=pg_catalog, pankha',
                                                        'search_path=pg_catalog, pg_temp']))
 ORDER BY l.lanname, p.oid::regprocedure::text;

-- The bridge's role, as the bridge uses it.
SELECT pankha.register_agent('priv-a', 'A') AS token_a \gset
SELECT pankha.create_ui_token('priv-op', 'operator') AS token_op \gset
SELECT pankha.create_enrollment_key() AS enroll_key \gset
SET SESSION AUTHORIZATION regress_bridge_login;
SELECT pankha.bridge_started('priv-bridge') AS stale_closed;
SELECT pankha.connection_opened('priv-a', 'priv-bridge', '192.0.2.1') AS conn \gset
SELECT pankha.agent_group('priv-a') AS agent_group;
SELECT pankha.effective_settings('priv-a') ? 'update_interval' AS has_settings;
SELECT pankha.record_status('priv-a', '{"uptime": 5}');
SELECT stored, sqlstate FROM pankha.ingest_many(ARRAY['priv-a'],
    ARRAY[jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000),
                             'sensors', jsonb_build_array(jsonb_build_object('id', 'cpu', 'temperature', 40)))::text]);
SELECT count(*) AS latest_rows FROM pankha.latest WHERE agent_id = 'priv-a';
SELECT count(*) >= 1 AS history_rows
  FROM pankha.history('priv-a', 'cpu', now() - interval '1 hour', now() + interval '1 minute', NULL);
SELECT count(*) AS agents_listed FROM pankha.agents a
 WHERE a.agent_id = 'priv-a' AND (SELECT count(*) FROM pankha.sensors s WHERE s.agent_id = a.agent_id) = 1
   AND (SELECT count(*) FROM pankha.fans f WHERE f.agent_id = a.agent_id) = 0;
SELECT pankha.send_command('priv-a', 'from_bridge', '{}', 'normal',
                           '1 hour', 'priv-op') IS NOT NULL AS queued;
SELECT count(*) AS claimed FROM pankha.claim_commands('{priv-a}');
SELECT pankha.set_setting('agent:priv-a', 'fan_step', '10', 'priv-op') AS settings_queued;
SELECT role, user_name FROM pankha.authenticate_ui(:'token_op');
SELECT count(*) > 0 AS credentials_listed FROM pankha.bridge_credentials();
SELECT pankha.record_handshakes('{}', '{agent}', '{priv-a}', '{wrong}', '{192.0.2.9}') AS refusals_audited;
SELECT pankha.try_enroll_agent(:'enroll_key', 'priv-e', 'E', NULL, '{}', '192.0.2.2') IS NOT NULL AS enrolled;
SELECT (pankha.agent_sync('priv-a', :'token_a', '192.0.2.1', '[]', '[]') ->> 'commands') IS NOT NULL AS synced;
SELECT pankha.agent_sync('priv-a', 'pka_wrong', '192.0.2.1', '[]', '[]') AS sync_refused;
SELECT pankha.connection_closed(:conn, 1000, 'bye') AS closed;
-- the batched forms a connect ramp uses: one row per connection, an
-- unregistered or invalid id answered alone
SELECT ord, connection_id - :conn AS after_conn, group_name,
       settings ? 'update_interval' AS has_settings, sqlstate, message
  FROM pankha.connections_opened(ARRAY['priv-a', 'priv-nobody', E'priv\x01'], 'priv-bridge',
                                 ARRAY['192.0.2.1', NULL, NULL]) ORDER BY ord;
SELECT pankha.connections_closed(ARRAY[:conn + 1, :conn], '{1001,1001}', '{going away,again}',
                                 '{1,1}', '{2,2}', '{3,3}', '{4,4}') AS batch_closed;
SELECT pankha.connections_closed(ARRAY[:conn + 1], '{1001}', '{twice}', '{1}', '{2}', '{3}', '{4}')
    AS closed_twice;
SELECT pg_temp.err($$SELECT pankha.connections_closed('{1}', '{1000,1000}', '{a}', '{0}', '{0}', '{0}', '{0}')$$);
SELECT expired, closed FROM pankha.bridge_beat('priv-bridge', 'run-1', 1000);
SELECT pg_temp.err($$SELECT pg_notify('pankha_alert', '{"from": "bridge"}')$$) AS alert_posted;
-- and what it must not do
SELECT pg_temp.err($$SELECT token_hash FROM pankha.tokens$$);
SELECT pg_temp.err($$INSERT INTO pankha.audit_log (event) VALUES ('forged')$$);
SELECT pg_temp.err($$DELETE FROM pankha.audit_log$$);
SELECT pg_temp.err($$SELECT pankha.audit('forged', NULL, '{}')$$);
SELECT pg_temp.err($$UPDATE pankha.agents SET status = 'online'$$);
SELECT pg_temp.err($$INSERT INTO pankha.connections (agent_id, bridge_id) VALUES ('priv-a', 'x')$$);
SELECT pg_temp.err($$SELECT count(*) FROM pankha.connections$$);
SELECT pg_temp.err($$SELECT pankha.flush_liveness()$$);
SELECT pg_temp.err($$SELECT pankha.maintain()$$);
SELECT pg_temp.err($$SELECT pankha.expire_bridges()$$);
SELECT pg_temp.err($$SELECT pankha.rollup()$$);
SELECT pg_temp.err($$SELECT * FROM pankha.drop_expired_partitions()$$);
SELECT pg_temp.err($$SELECT pankha.register_agent('priv-x', 'X')$$);
SELECT pg_temp.err($$SELECT pankha.create_ui_token('mallory', 'admin')$$);
SELECT pg_temp.err($$SELECT pankha.command_finished(gen_random_uuid(), 'priv-a', 'acked', NULL)$$);
SELECT pg_temp.err($$CREATE TABLE pankha.mine (x int)$$);
RESET SESSION AUTHORIZATION;
-- The worker's functions, pinned (L7).
SELECT p.oid::regprocedure AS worker_function, p.proconfig
  FROM pg_proc p
 WHERE p.oid IN ('pankha.maintain()'::regprocedure, 'pankha.rollup(boolean)'::regprocedure,
                 'pankha.ensure_time_partition(text, text, timestamptz)'::regprocedure,
                 'pankha.drop_expired_partitions()'::regprocedure,
                 'pankha.archive_partition(regclass, text)'::regprocedure)
 ORDER BY p.oid::regprocedure::text;
SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,
       (SELECT array_agg(m.roleid::regrole ORDER BY 1) FROM pg_auth_members m
         WHERE m.member = 'regress_bridge_login'::regrole) AS member_of
  FROM pg_roles WHERE rolname = 'regress_bridge_login';

-- A role in no pankha role gets nothing but the pure functions, even where
-- it may look into the schema.
GRANT USAGE ON SCHEMA pankha TO regress_nobody;
SET SESSION AUTHORIZATION regress_nobody;
SELECT pankha.valid_id('ok') AS valid_id_is_public;
SELECT pg_temp.err($$SELECT pankha.flush_liveness()$$);
SELECT pg_temp.err($$SELECT * FROM pankha.agent_liveness()$$);
SELECT pg_temp.err($$SELECT pankha.connection_opened('priv-a', 'evil')$$);
SELECT pg_temp.err($$SELECT * FROM pankha.history('priv-a', 'cpu', now() - interval '1 hour', now(), NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pankha.latest$$);
RESET SESSION AUTHORIZATION;
-- The only volatile function PUBLIC may call draws random bytes.
SELECT e.fn AS public_and_volatile FROM expected_acl e
  JOIN pg_proc p ON p.oid = e.fn::regprocedure
 WHERE e.grantees = 'PUBLIC' AND p.provolatile = 'v';

-- M8: a flush whose UPDATE fails leaves the liveness it did not write for
-- the next flush (it used to clear it first).  regress_flusher may call
-- the function but may not write pankha.agents.
SELECT pankha.flush_liveness() >= 0 AS flushed_before;
SELECT stored FROM pankha.ingest_many(ARRAY['priv-a'],
    ARRAY[jsonb_build_object('timestamp', floor(extract(epoch FROM now()) * 1000) - 1000)::text]);
CREATE ROLE regress_flusher;
GRANT USAGE ON SCHEMA pankha TO regress_flusher;
GRANT EXECUTE ON FUNCTION pankha.flush_liveness() TO regress_flusher;
SET ROLE regress_flusher;
SELECT pg_temp.err($$SELECT pankha.flush_liveness()$$);
RESET ROLE;
SELECT pankha.flush_liveness() AS persisted_after_failed_flush;
SELECT pankha.flush_liveness() AS nothing_left;
REVOKE ALL ON FUNCTION pankha.flush_liveness() FROM regress_flusher;
REVOKE ALL ON SCHEMA pankha FROM regress_flusher;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
DROP ROLE regress_bridge_login;
DROP ROLE regress_nobody;
DROP ROLE regress_flusher;
