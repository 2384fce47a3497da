-- Pankha extension: live data across bridges, and the audit log on NOTIFY.
--
-- A dashboard may be connected to any bridge, an agent to any other.  Each
-- bridge records here the topics its dashboards subscribe to ("global",
-- "agents.<id>", "groups.<name>") with pankha.live_watch(), again before
-- they expire (so a bridge that died stops being served); ingest_many
-- announces on NOTIFY pankha_live the frames of the agents those topics
-- name, for every bridge but the one that ingests them (its own
-- dashboards have them already).  Agents nobody watches cost nothing but
-- a hash lookup per frame.  See live.c.
--
-- Rows added to the audit log are announced on NOTIFY pankha_audit (the
-- bridges' "audit" topic, admins only).

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
SET search_path = pg_catalog, pankha, pg_temp
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

-- What a bridge's /metrics and /readyz show of the whole fleet, in one call
-- every few seconds (the bridge reads no table itself).
CREATE FUNCTION pankha.bridge_stats() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pankha, pg_temp
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
