-- What the bridges record: connection history, online/offline status,
-- agent status reports, the HTTP sync fallback.  Invalid input beside
-- valid input.  (NOTIFY delivery is tested with real bridges in
-- bridge/tests/test_faults.)
CREATE EXTENSION pankha;
SET client_min_messages = warning;

SELECT length(pankha.register_agent('b-1', 'Bridge test 1')) > 0 AS registered;
SELECT length(pankha.register_agent('b-2', 'Bridge test 2')) > 0 AS registered;

-- a connection opens: the agent is online
SELECT pankha.connection_opened('b-1', 'bridge-a', '10.0.0.1') AS first_id \gset
SELECT status FROM pankha.agents WHERE agent_id = 'b-1';
SELECT agent_id, bridge_id, remote_addr, closed_at IS NULL AS open FROM pankha.connections;

-- invalid input
SELECT pankha.connection_opened('nobody', 'bridge-a');
SELECT pankha.connection_opened(repeat('x', 65), 'bridge-a');
SELECT pankha.connection_opened('b-1', '');
SELECT pankha.connection_closed(:first_id, 999, 'bad code');
SELECT pankha.connection_closed(:first_id, 5000, 'bad code');

-- a second connection of the same agent (the replacement), on another bridge
SELECT pankha.connection_opened('b-1', 'bridge-b', '10.0.0.2') > :first_id AS newer;
-- the older closes with 4000: the agent stays online, a second close is a no-op
SELECT pankha.connection_closed(:first_id, 4000, 'replaced', 10, 1000, 5, 200);
SELECT pankha.connection_closed(:first_id, 4000, 'replaced');
SELECT status FROM pankha.agents WHERE agent_id = 'b-1';
SELECT bridge_id, close_code, close_reason, frames_in, bytes_in, frames_out, bytes_out
  FROM pankha.connections ORDER BY connection_id;
SELECT pankha.connection_closed(12345, 1000, 'unknown connection');

-- a bridge restarting under the same id closes what its last run left open
SELECT pankha.bridge_started('bridge-b');
SELECT status FROM pankha.agents WHERE agent_id = 'b-1';
SELECT bridge_id, close_code, close_reason FROM pankha.connections ORDER BY connection_id;
SELECT agent_id, connections, open_connections FROM pankha.connection_stats;

-- status reports: the latest one is kept
SELECT pankha.record_status('b-1', '{"uptime_seconds": 10}');
SELECT pankha.record_status('b-1', '{"uptime_seconds": 20, "memory_usage_mb": 45}');
SELECT agent_id, report FROM pankha.agent_reports;
SELECT pankha.record_status('b-1', '[1, 2]');
SELECT pankha.record_status('b-1', NULL);
SELECT pankha.record_status('nobody', '{}');
-- what it returns: frames dropped since the previous report (a lower count:
-- the agent restarted, all of it is new); a bad dropped_frames counts 0
SELECT pankha.record_status('b-1', '{"dropped_frames": 5}');
SELECT pankha.record_status('b-1', '{"dropped_frames": 5}');
SELECT pankha.record_status('b-1', '{"dropped_frames": 12}');
SELECT pankha.record_status('b-1', '{"dropped_frames": 3}');
SELECT pankha.record_status('b-1', '{"dropped_frames": "lots"}');
SELECT pankha.record_status('b-1', '{"dropped_frames": -4}');
SELECT pankha.record_status('b-1', '{"dropped_frames": 1e400}');
SELECT pankha.record_status('b-1', '{"uptime_seconds": 20, "memory_usage_mb": 45}');

-- agent groups for the dashboards' topics
SELECT pankha.agent_group('b-1') IS NULL AS no_group;

-- the HTTP sync fallback: bad credentials give NULL and are audited
SELECT pankha.agent_sync('b-2', 'wrong-token', '10.0.0.9', '[]', '[]') IS NULL AS refused;
SELECT event, agent_id, client_addr FROM pankha.audit_log WHERE event = 'auth.failed' AND agent_id = 'b-2';

DROP EXTENSION pankha CASCADE;
