-- Bridge heartbeats (issue 17): bridge_beat records a run of a bridge,
-- expire_bridges closes the open connections of a bridge that missed
-- three beats (plus 2 s) while the server was up to hear them, and the
-- run that was declared dead learns it from its next beat.
CREATE EXTENSION pankha;
SET client_min_messages = warning;
SELECT pankha.register_agent('hb-a', 'A', 'host-a', '{}') IS NOT NULL AS registered;
SELECT pankha.register_agent('hb-b', 'B', 'host-b', '{}') IS NOT NULL AS registered;
RESET client_min_messages;

-- bad input names the field
SELECT pankha.bridge_beat('', 'run-1', 1000);
SELECT pankha.bridge_beat('hb-1', NULL, 1000);
SELECT pankha.bridge_beat('hb-1', 'run-1', 50);
SELECT pankha.bridge_beat(repeat('x', 129), 'run-1', 1000);

-- two bridges beat; hb-1 holds agent hb-a, hb-2 holds hb-b
SELECT expired, closed FROM pankha.bridge_beat('hb-1', 'run-1', 100);
SELECT expired, closed FROM pankha.bridge_beat('hb-2', 'run-1', 100);
SELECT pankha.connection_opened('hb-a', 'hb-1') AS conn_a \gset
SELECT pankha.connection_opened('hb-b', 'hb-2') AS conn_b \gset
SELECT bridge_id, alive, open_connections FROM pankha.bridge_status ORDER BY 1;

-- wait (bounded) until the server has been up longer than a bridge's
-- allowance after a restart (3 x 100 ms + 12 s), so silence can be judged
SELECT pg_sleep(greatest(0, 12.5 - extract(epoch FROM clock_timestamp() - pankha.beats_heard_since())));
-- hb-1 stops beating: 10 s ago is its last beat; hb-2's beat closes its connection
UPDATE pankha.bridges SET last_beat = clock_timestamp() - interval '10 seconds' WHERE bridge_id = 'hb-1';
SELECT expired, closed FROM pankha.bridge_beat('hb-2', 'run-1', 100);
SELECT agent_id, bridge_id, close_code, close_reason, closed_at IS NOT NULL AS closed
  FROM pankha.connections WHERE connection_id IN (:conn_a, :conn_b) ORDER BY 1;
SELECT agent_id, status FROM pankha.agents WHERE agent_id IN ('hb-a', 'hb-b') ORDER BY 1;
SELECT bridge_id, alive, open_connections, expired_at IS NOT NULL AS expired, expired_connections
  FROM pankha.bridge_status ORDER BY 1;
-- nothing more to close: a second pass closes nothing
SELECT pankha.expire_bridges() AS closed_again;

-- the same run of hb-1 beats again: it learns it was declared dead
SELECT expired, closed FROM pankha.bridge_beat('hb-1', 'run-1', 100);
-- and only once
SELECT expired, closed FROM pankha.bridge_beat('hb-1', 'run-1', 100);
-- a new run under an expired id starts afresh (not "expired")
UPDATE pankha.bridges SET last_beat = clock_timestamp() - interval '10 seconds' WHERE bridge_id = 'hb-1';
SELECT pankha.expire_bridges() AS closed_none;
SELECT expired, closed FROM pankha.bridge_beat('hb-1', 'run-2', 100);
SELECT bridge_id, instance, alive FROM pankha.bridge_status WHERE bridge_id = 'hb-1';

-- the worker's pass runs the same expiry
SELECT position('expire_bridges' IN pg_get_functiondef('pankha.maintain()'::regprocedure)) > 0 AS worker_expires;

DROP EXTENSION pankha CASCADE;
