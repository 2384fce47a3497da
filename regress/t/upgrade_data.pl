# ALTER EXTENSION pankha UPDATE on a database that has been in use at the
# released 0.1.0: agents, tokens, frames across day partitions, rollups,
# commands in every state, settings, profiles, alert rules and alerts,
# connection history.  After the update every table holds the same rows,
# the tokens still authenticate, and ingest, claim, ack, rollup and history
# work; a dump of the upgraded database restores without error.
# (upgrade.pl compares the upgraded catalog with a fresh install.)
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use PankhaData;

my $node = PostgreSQL::Test::Cluster->new('upgrade_data');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pankha'\npankha.database = 'postgres'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE used');
$node->safe_psql('used', q{CREATE EXTENSION pankha VERSION '0.1.0'});
my $keys = PankhaData::fill($node, 'used');
my $before = PankhaData::digests($node, 'used');
my $columns = PankhaData::columns($node, 'used');
is($node->safe_psql('used', q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM pankha.commands}),
	'acked,dead,expired,failed,queued,sent', 'the 0.1.0 database has commands in every state');
cmp_ok($node->safe_psql('used', q{SELECT count(*) FROM pankha.time_partitions WHERE parent = 'readings'}),
	'>=', 7, 'and frames in day partitions');

my ($ret, $out, $err) = $node->psql('used', 'ALTER EXTENSION pankha UPDATE', on_error_stop => 1);
is($ret, 0, 'ALTER EXTENSION pankha UPDATE succeeds on a database in use') or diag($err);
isnt($node->safe_psql('used', q{SELECT extversion FROM pg_extension WHERE extname = 'pankha'}), '0.1.0',
	'and leaves 0.1.0');

# The rows as they were: columns 0.2.0 adds (at the end) are left out.
my $after = PankhaData::digests($node, 'used', $columns);
my @differ = grep { ($after->{$_} // 'missing') ne $before->{$_} } sort keys %$before;
is(scalar(@differ), 0, 'every table holds the same rows after the update (' . scalar(keys %$before) . ' tables)')
	or diag(join("\n", map { "$_: $before->{$_} before, " . ($after->{$_} // 'missing') . ' after' } @differ));
is($node->safe_psql('used', q{
	SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'pankha' AND c.relname ~ '^(readings|rollup_1m|rollup_1h)_[0-9]+$'
	   AND NOT c.relispartition}),
	'0', 'every partition is attached again');

PankhaData::works($node, 'used', $keys, 'upgraded');

# Partitions the upgraded extension makes, and those from 0.1.0, dump and
# restore alike.
$node->safe_psql('used', q{SELECT pankha.ensure_partitions(now() + interval '3 days', now() + interval '4 days')});
$node->safe_psql('postgres', 'CREATE DATABASE copy');
my $file = $node->basedir . '/used.dump';
my $ok = IPC::Run::run([ 'pg_dump', '-Fc', '-d', $node->connstr('used'), '-f', $file ], '>', \$out, '2>', \$err)
	&& IPC::Run::run([ 'pg_restore', '-d', $node->connstr('copy'), $file ], '>', \$out, '2>', \$err);
ok($ok && $err eq '', 'a dump of the upgraded database restores without error') or diag($err);

$node->stop;
done_testing();
