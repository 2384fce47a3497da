-- Alert rules: checked arguments, firing once when a condition has held
-- for the rule's duration, the cooldown after resolving, agent-offline
-- rules, and the NOTIFY payloads; and the liveness transitions the worker
-- makes each pass.
\i sql/worker_helpers.psql

SELECT pankha.register_agent(a, 'Alerts ' || a) IS NOT NULL AS registered
FROM unnest('{a1,a2,a3}'::text[]) a;

-- Bad rules, each named in its error.
SELECT regexp_replace(pg_temp.err(stmt), ' \(Failing row contains .*', '') AS error FROM (VALUES
    ($$SELECT pankha.add_alert_rule('', 'temperature_above', 80)$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_between', 80)$$),
    ($$SELECT pankha.add_alert_rule('r', NULL, 80)$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above')$$),
    ($$SELECT pankha.add_alert_rule('r', 'fan_rpm_below', 'NaN')$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 'Infinity')$$),
    ($$SELECT pankha.add_alert_rule('r', 'agent_offline', 1)$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 80, duration => '-1 minute')$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 80, cooldown => NULL)$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 80, severity => 'fatal')$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 80, agent_id => 'nobody')$$),
    ($$SELECT pankha.add_alert_rule('r', 'temperature_above', 80, agent_group => 'nowhere')$$),
    ($$SELECT pankha.add_alert_rule('r', 'fan_rpm_below', 300, sensor_type => 'cpu')$$),
    ($$SELECT pankha.add_alert_rule('r', 'agent_offline', target_id => 'cpu_temp')$$),
    ($$INSERT INTO pankha.alert_rules (name, condition) VALUES ('direct', 'fan_rpm_below')$$),
    ($$INSERT INTO pankha.alert_rules (name, condition, threshold, severity) VALUES ('direct', 'fan_rpm_below', 1, 'loud')$$)
) AS t(stmt);

-- The rules of this test.
SELECT pankha.add_alert_rule('cpu-hot', 'temperature_above', 70, cooldown => '1 hour',
                             severity => 'critical', sensor_type => 'cpu') AS cpu_hot,
       pankha.add_alert_rule('nvme-hot-for-an-hour', 'temperature_above', 60,
                             duration => '1 hour', target_id => 'nvme_temp') AS nvme_hot,
       pankha.add_alert_rule('fan-slow', 'fan_rpm_below', 500, cooldown => '0') AS fan_slow,
       pankha.add_alert_rule('a2-gone', 'agent_offline', agent_id => 'a2', severity => 'info') AS a2_gone;
SELECT pg_temp.err($$SELECT pankha.add_alert_rule('cpu-hot', 'temperature_below', 5)$$) AS duplicate;
SELECT name, condition, threshold, duration, cooldown, severity, agent_id, sensor_type, target_id
FROM pankha.alert_rules ORDER BY rule_id;

-- a1 reports: cpu 80 (hot), nvme 65 (hot, but not for an hour yet), fan
-- at 300 rpm (slow).  Sensors are judged on online agents' newest frame.
SELECT pankha.ingest('a1', pg_temp.frame_now(80, 65, 300)) AS stored;
UPDATE pankha.agents SET status = 'online' WHERE agent_id IN ('a1', 'a2');
LISTEN pankha_alert;
\o :notify_file
SELECT * FROM pankha.evaluate_alerts();
\o
SELECT channel, payload - '{alert_id,rule_id,fired_at,resolved_at}'::text[] AS payload,
       payload ? 'alert_id' AND payload ? 'fired_at' AS has_id_and_time
FROM pg_temp.notified(:'notify_file');
UNLISTEN pankha_alert;
SELECT * FROM pankha.evaluate_alerts() AS fires_once;

-- Cooler: both resolve, each with a notification.
SELECT pankha.ingest('a1', pg_temp.frame_now(50, 65, 1200)) AS stored;
LISTEN pankha_alert;
\o :notify_file
SELECT * FROM pankha.evaluate_alerts();
\o
SELECT payload ->> 'rule' AS rule, payload ->> 'state' AS state, payload -> 'value' AS value,
       payload ->> 'resolved_at' IS NOT NULL AS resolved_at_set
FROM pg_temp.notified(:'notify_file');
UNLISTEN pankha_alert;

-- Hot again at once: cpu-hot is in its hour of cooldown, fan-slow has none.
SELECT pankha.ingest('a1', pg_temp.frame_now(85, 65, 200)) AS stored;
SELECT * FROM pankha.evaluate_alerts();
SELECT rule_name, target_id, state, value, resolved_value FROM pankha.alerts ORDER BY alert_id;

-- An offline agent: its rule fires; its sensors are not judged until it is back.
UPDATE pankha.agents SET status = 'offline' WHERE agent_id = 'a2';
SELECT * FROM pankha.evaluate_alerts();
UPDATE pankha.agents SET status = 'online' WHERE agent_id = 'a2';
SELECT * FROM pankha.evaluate_alerts();
UPDATE pankha.agents SET status = 'offline' WHERE agent_id = 'a1';
SELECT pankha.ingest('a1', pg_temp.frame_now(20, 20, 1500)) AS stored;
SELECT * FROM pankha.evaluate_alerts() AS offline_agent_not_judged;
UPDATE pankha.agents SET status = 'online' WHERE agent_id = 'a1';

-- The nvme rule fires only once its condition has held for an hour.
SELECT pankha.ingest('a1', pg_temp.frame_now(20, 66, 1500)) AS stored;
SELECT * FROM pankha.evaluate_alerts();
UPDATE pankha.alert_state SET pending_since = now() - interval '61 minutes'
WHERE rule_id = (SELECT rule_id FROM pankha.alert_rules WHERE name = 'nvme-hot-for-an-hour');
SELECT * FROM pankha.evaluate_alerts();

-- Disabling a rule resolves what it had firing.
UPDATE pankha.alert_rules SET enabled = false WHERE name = 'nvme-hot-for-an-hour';
SELECT * FROM pankha.evaluate_alerts();
SELECT rule_name, agent_id, target_id, severity, state, value, resolved_value FROM pankha.alerts ORDER BY alert_id;
-- Re-enabled (here without duration and cooldown), it fires again.
UPDATE pankha.alert_rules SET enabled = true, duration = '0', cooldown = '0' WHERE name = 'nvme-hot-for-an-hour';
SELECT * FROM pankha.evaluate_alerts();

-- A rule for a group judges its members only; deleting the group deletes it.
SELECT pankha.create_group('lab');
SELECT pankha.set_agent_group('a1', 'lab') AS moved, pankha.set_agent_group('a2', 'lab') AS moved;
SELECT pankha.add_alert_rule('lab-fan-fast', 'fan_rpm_above', 1400, cooldown => '0', agent_group => 'lab') IS NOT NULL AS added;
SELECT pankha.ingest('a3', pg_temp.frame_now(20, 20, 1600)) AS stored;
UPDATE pankha.agents SET status = 'online' WHERE agent_id = 'a3';
SELECT * FROM pankha.evaluate_alerts();
SELECT rule_name, agent_id, target_id, state, value FROM pankha.alerts WHERE rule_name = 'lab-fan-fast';
SELECT pankha.delete_group('lab') AS deleted;
SELECT count(*) AS lab_rules_left FROM pankha.alert_rules WHERE name = 'lab-fan-fast';
SELECT * FROM pankha.evaluate_alerts() AS resolved_with_its_rule;
UPDATE pankha.agents SET status = 'offline' WHERE agent_id = 'a3';

-- Liveness: a frame brings an agent online, NOTIFYing pankha_agent_status;
-- the default threshold is three update intervals, at least 15 seconds.
SELECT pankha.offline_threshold('a3') AS default_threshold;
SELECT pankha.ingest('a3', pg_temp.frame_now(40, 40, 1000)) AS stored;
LISTEN pankha_agent_status;
\o :notify_file
SELECT agent_id, status FROM pankha.update_agent_status() WHERE agent_id = 'a3';
\o
SELECT channel, payload FROM pg_temp.notified(:'notify_file') WHERE payload ->> 'agent_id' = 'a3';
UNLISTEN pankha_agent_status;
SELECT agent_id, status, last_seen > now() - interval '1 minute' AS last_seen_persisted
FROM pankha.agents WHERE agent_id = 'a3';
-- Nothing new: no change.
SELECT count(*) AS changes FROM pankha.update_agent_status() WHERE agent_id = 'a3';
-- Marked offline (as a bridge does when the connection closes), it stays
-- offline until a newer frame arrives.
UPDATE pankha.agents SET status = 'offline', last_seen = now() WHERE agent_id = 'a3';
SELECT count(*) AS changes FROM pankha.update_agent_status() WHERE agent_id = 'a3';
SELECT pankha.ingest('a3', pg_temp.frame_now(40, 40, 1000)) AS stored;
SELECT agent_id, status FROM pankha.update_agent_status() WHERE agent_id = 'a3';
-- Silent too long: offline.  Silence only counts from the server's start
-- (or promotion), so first wait, bounded, until it has been up 16 s.
SELECT pg_sleep(greatest(0, 16.5 - extract(epoch FROM clock_timestamp() - pankha.beats_heard_since())));
UPDATE pankha.agents SET last_seen = now() - interval '16 seconds' WHERE agent_id = 'a3';
LISTEN pankha_agent_status;
\o :notify_file
SELECT agent_id, status FROM pankha.update_agent_status() WHERE agent_id = 'a3';
\o
SELECT channel, payload FROM pg_temp.notified(:'notify_file') WHERE payload ->> 'agent_id' = 'a3';
UNLISTEN pankha_agent_status;

SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
