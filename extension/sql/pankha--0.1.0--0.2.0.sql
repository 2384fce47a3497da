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
