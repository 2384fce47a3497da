-- Live data across bridges (85_live.sql, live.c): the topics bridges
-- record with pankha.live_watch, the agents they resolve to, and the
-- frames ingest_many announces on NOTIFY pankha_live; the audit log on
-- NOTIFY pankha_audit.
\i sql/queue_helpers.psql

SELECT pankha.register_agent(a, a) IS NOT NULL AS registered FROM unnest('{w1,w2,w3,w4}'::text[]) a;
INSERT INTO pankha.agent_groups (group_name) VALUES ('rack');
INSERT INTO pankha.agent_group_members (agent_id, group_name) VALUES ('w2', 'rack'), ('w3', 'rack');

-- Recording: a bridge's set replaces the one before; bad input names its field.
SELECT pankha.live_watch('bridge-b', '{agents.w1,groups.rack,agents.w1}') AS topics;
SELECT bridge_id, topic, expires_at > now() + interval '25 seconds' AS fresh
  FROM pankha.live_watches ORDER BY 1, 2;
SELECT * FROM pankha.live_watched('bridge-a') ORDER BY 1;
SELECT count(*) AS own_topics_not_resolved FROM pankha.live_watched('bridge-b');
SELECT pg_temp.err($$SELECT pankha.live_watch('bridge-b', '{alerts}')$$);
SELECT pg_temp.err($$SELECT pankha.live_watch('bridge-b', '{agents.}')$$);
SELECT pg_temp.err($$SELECT pankha.live_watch('', '{global}')$$);
SELECT pg_temp.err($$SELECT pankha.live_watch('bridge-b', '{global}', interval '2 hours')$$);
SELECT pg_temp.err($$SELECT pankha.live_watch('bridge-b', NULL)$$);
SELECT topic FROM pankha.live_watches ORDER BY 1;
-- "global" resolves to every agent; expired rows count for nothing
SELECT pankha.live_watch('bridge-c', '{global}', interval '1 second') AS topics;
SELECT * FROM pankha.live_watched('bridge-a') ORDER BY 1;
UPDATE pankha.live_watches SET expires_at = now() - interval '1 second' WHERE bridge_id = 'bridge-c';
SELECT * FROM pankha.live_watched('bridge-a') ORDER BY 1;

-- Frames of now (older ones are past the raw retention), shown without their time.
CREATE TEMP TABLE base AS SELECT floor(extract(epoch FROM now()) * 1000)::bigint - 10000 AS ms;
CREATE FUNCTION pg_temp.f(temp int, ms int DEFAULT 0) RETURNS text
LANGUAGE sql AS $$
SELECT format('{"timestamp": %s, "sensors": [{"id": "cpu", "temperature": %s}]}', b.ms + f.ms, temp)
  FROM base b
$$;
CREATE FUNCTION pg_temp.live(path text) RETURNS SETOF text
LANGUAGE sql AS $$
SELECT regexp_replace(n, '"timestamp": [0-9]+', '"timestamp": <now>') FROM pg_temp.notifications(path) n
$$;

-- Announcing: a frame of a watched agent, ingested by another bridge, is
-- announced on commit with its agent, group and text; one nobody else
-- watches is not; the watching bridge's own frames are not announced.
SET pankha.bridge_id = 'bridge-a';
LISTEN pankha_live;
\o :notify_file
SELECT stored FROM pankha.ingest_many('{w1,w2,w4}', ARRAY[pg_temp.f(41), pg_temp.f(42), pg_temp.f(44)]);
-- a frame already stored is not announced again
SELECT stored FROM pankha.ingest_many('{w1}', ARRAY[pg_temp.f(41)]);
\o
SELECT * FROM pg_temp.live(:'notify_file');
SET pankha.bridge_id = 'bridge-b';
\o :notify_file
SELECT stored FROM pankha.ingest_many('{w1}', ARRAY[pg_temp.f(45, 1)]);
\o
SELECT count(*) AS announced_to_itself FROM pg_temp.notifications(:'notify_file');
-- the set is read again within a fraction of a second: after an
-- unsubscribe, nothing of w1 crosses
SET pankha.bridge_id = 'bridge-a';
SELECT pankha.live_watch('bridge-b', '{groups.rack}') AS topics;
SELECT pg_sleep(0.3);
\o :notify_file
SELECT stored FROM pankha.ingest_many('{w1,w3}', ARRAY[pg_temp.f(46, 2), pg_temp.f(47, 2)]);
\o
SELECT * FROM pg_temp.live(:'notify_file');
-- an empty set forgets the bridge
SELECT pankha.live_watch('bridge-b', '{}') AS topics;
SELECT count(*) AS rows_left FROM pankha.live_watches;
UNLISTEN pankha_live;
RESET pankha.bridge_id;

-- The audit log: every new row on NOTIFY pankha_audit, shaped as api_audit's items.
LISTEN pankha_audit;
\o :notify_file
SELECT pankha.create_ui_token('aud', 'viewer') IS NOT NULL AS created;
\o
SELECT regexp_replace(regexp_replace(n, '"(audit_id|logged_at)": ("[^"]*"|[0-9]+)', '"\1": <x>', 'g'),
                      '"selector": "[^"]*"', '"selector": <x>') AS audit_notification
  FROM pg_temp.notifications(:'notify_file') n;
UNLISTEN pankha_audit;

-- Leave the database as it was found.
SET client_min_messages = warning;
DROP EXTENSION pankha CASCADE;
