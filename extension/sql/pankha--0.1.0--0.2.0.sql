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
