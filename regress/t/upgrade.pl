# The extension upgrades in place: a database created at the released 0.1.0
# and brought up with ALTER EXTENSION pankha UPDATE ends with exactly the
# catalog a fresh CREATE EXTENSION installs -- the same members, function
# definitions, tables and columns (in order), constraints, indexes,
# triggers, views, types, grants, comments and pg_dump configuration.  A
# change to the numbered SQL parts without its upgrade script fails here,
# naming the objects that differ.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pankha'
pankha.database = 'postgres'
});
$node->start;

my $default = $node->safe_psql('postgres',
    q{SELECT default_version FROM pg_available_extensions WHERE name = 'pankha'});
my @versions = split /\n/, $node->safe_psql('postgres',
    q{SELECT version FROM pg_available_extension_versions WHERE name = 'pankha' ORDER BY version});
ok((grep { $_ eq '0.1.0' } @versions), 'the released 0.1.0 is still installable');
isnt($default, '0.1.0', "the default version ($default) is newer than 0.1.0");

# One line per catalog fact about the extension's objects, sorted, so two
# databases compare as text.  Runtime partitions (children of the readings
# table made by ingest) are data, not schema, and are left out.
my $describe = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pankha'),
ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'pankha'),
members AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM pg_class c, ns
     WHERE c.relnamespace = ns.oid AND NOT c.relispartition
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c', 'f'))
SELECT line FROM (
    SELECT 'member ' || pg_describe_object(classid, objid, objsubid) AS line FROM members
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure || E'\n' ||
           CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END ||
           E'\nacl ' || coalesce(p.proacl::text, 'default') ||
           E'\ncomment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
      FROM pg_proc p, ns WHERE p.pronamespace = ns.oid
    UNION ALL
    SELECT 'relation ' || c.relname || ' kind ' || c.relkind::text ||
           ' persistence ' || c.relpersistence::text ||
           ' options ' || coalesce(c.reloptions::text, '-') ||
           ' partkey ' || coalesce(pg_get_partkeydef(c.oid), '-') ||
           E'\nacl ' || coalesce(c.relacl::text, 'default') ||
           E'\ncomment ' || coalesce(obj_description(c.oid, 'pg_class'), '-') ||
           CASE WHEN c.relkind IN ('v', 'm') THEN E'\n' || pg_get_viewdef(c.oid) ELSE '' END
      FROM rels c
    UNION ALL
    SELECT 'column ' || c.relname || ' #' ||
           row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || a.attname || ' ' ||
           format_type(a.atttypid, a.atttypmod) ||
           CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
           coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') ||
           CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END ||
           CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END ||
           ' acl ' || coalesce(a.attacl::text, 'default') ||
           ' comment ' || coalesce(col_description(c.oid, a.attnum), '-')
      FROM rels c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
      FROM rels c JOIN pg_constraint k ON k.conrelid = c.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) ||
           ' comment ' || coalesce(obj_description(i.indexrelid, 'pg_class'), '-')
      FROM rels c JOIN pg_index i ON i.indrelid = c.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
      FROM rels c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || c.relname || ' ' || pol.polname || ' ' || pol.polcmd::text || ' ' ||
           coalesce(pg_get_expr(pol.polqual, pol.polrelid), '-') || ' ' ||
           coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '-')
      FROM rels c JOIN pg_policy pol ON pol.polrelid = c.oid
    UNION ALL
    SELECT 'sequence ' || c.relname || ' ' || format_type(s.seqtypid, NULL) || ' ' ||
           s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmax || ' ' || s.seqmin || ' ' ||
           s.seqcache || ' ' || s.seqcycle
      FROM rels c JOIN pg_sequence s ON s.seqrelid = c.oid
    UNION ALL
    SELECT 'type ' || t.typname || ' ' || t.typtype::text ||
           coalesce(' labels ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                     FROM pg_enum e WHERE e.enumtypid = t.oid), '') ||
           CASE WHEN t.typtype = 'd' THEN ' base ' || format_type(t.typbasetype, t.typtypmod) ||
                ' ' || coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), ' ' ORDER BY k.conname)
                                   FROM pg_constraint k WHERE k.contypid = t.oid), '')
                ELSE '' END ||
           ' acl ' || coalesce(t.typacl::text, 'default') ||
           ' comment ' || coalesce(obj_description(t.oid, 'pg_type'), '-')
      FROM pg_type t, ns
     WHERE t.typnamespace = ns.oid AND t.typtype IN ('e', 'd', 'b', 'r', 'm')
       AND t.typcategory <> 'A'
    UNION ALL
    SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, 'default') ||
           ' comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
      FROM pg_namespace n, ns WHERE n.oid = ns.oid
    UNION ALL
    SELECT 'config ' || cfg.rel::regclass::text || ' ' || coalesce(cfg.cond, '-')
      FROM pg_extension e,
           unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)
     WHERE e.extname = 'pankha'
) facts
ORDER BY line
};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('fresh', 'CREATE EXTENSION pankha');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'pankha'}),
   $default, 'a fresh install is at the default version');

$node->safe_psql('upgraded', q{CREATE EXTENSION pankha VERSION '0.1.0'});
my ($ret, $out, $err) = $node->psql('upgraded', 'ALTER EXTENSION pankha UPDATE', on_error_stop => 1);
is($ret, 0, 'ALTER EXTENSION pankha UPDATE succeeds from 0.1.0') or diag($err);
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'pankha'}),
   $default, 'and reaches the default version');

my %facts;
for my $db (qw(fresh upgraded)) {
    my %set;
    # Facts span lines; split them on the kind word that starts each.
    my $text = $node->safe_psql($db, "SELECT string_agg(line, E'\\n\\x1e\\n') FROM ($describe) d");
    $set{$_} = 1 for grep { length } split /\n\x1e\n/, $text;
    $facts{$db} = \%set;
}
ok(scalar(keys %{ $facts{fresh} }) > 100, 'the catalog description covers the extension ('
   . scalar(keys %{ $facts{fresh} }) . ' facts)');

my @missing = sort grep { !$facts{upgraded}{$_} } keys %{ $facts{fresh} };
my @extra   = sort grep { !$facts{fresh}{$_} } keys %{ $facts{upgraded} };
my $short = sub { my $s = shift; $s =~ s/\n.*//s; $s };
is(scalar(@missing), 0, 'every object of a fresh install is the same after the upgrade')
    or diag(join("\n", map { 'fresh only: ' . $short->($_) } @missing));
is(scalar(@extra), 0, 'the upgrade leaves nothing a fresh install lacks')
    or diag(join("\n", map { 'upgraded only: ' . $short->($_) } @extra));

$node->stop;
done_testing();
