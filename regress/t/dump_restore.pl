# pg_dump and pg_restore of a database with pankha, in the custom and the
# plain format, restore with no error at all, and the restored database
# holds the same rows in every table -- configuration, tokens, settings,
# profiles, alert rules and alerts, commands in every state, audit,
# connection history, status reports, raw frames in each day partition,
# rollups -- and goes on working: the tokens authenticate, it ingests
# (the partitions' keys still refuse a re-sent frame), claims and acks
# commands, rolls up and serves history.  Partitions made at run time used
# to restore with "multiple primary keys" errors (see the comment on
# pankha.readings in extension/sql/00_schema.sql).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use PankhaData;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
# The worker maintains another database, so that nothing changes the
# databases compared here behind the test's back.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pankha'\npankha.database = 'postgres'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION pankha');
my $keys = PankhaData::fill($node, 'src');
my $before = PankhaData::digests($node, 'src');

my $day_partitions = $node->safe_psql('src', q{
	SELECT count(*) FROM pankha.time_partitions t
	 WHERE t.parent = 'readings' AND EXISTS (SELECT FROM pankha.readings r WHERE r.ts >= t.range_start AND r.ts < t.range_end)});
cmp_ok($day_partitions, '>=', 6, "frames fill $day_partitions day partitions");
cmp_ok($node->safe_psql('src', q{SELECT count(*) FROM pankha.rollup_1h}), '>', 0, 'and the rollups');
is($node->safe_psql('src', q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM pankha.commands}),
	'acked,dead,expired,failed,queued,sent', 'commands are in every state');
cmp_ok($node->safe_psql('src', q{SELECT count(*) FROM pankha.connections}), '>=', 3, 'connections are recorded');

my $dir = $node->basedir;
for my $format ('custom', 'plain')
{
	my $db = "restored_$format";
	my $file = "$dir/src.$format";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($out, $err);
	my $ok = IPC::Run::run([ 'pg_dump', '-F', substr($format, 0, 1), '-d', $node->connstr('src'), '-f', $file ],
		'>', \$out, '2>', \$err);
	ok($ok && $err eq '', "pg_dump -F$format succeeds without a message") or diag($err);
	if ($format eq 'custom')
	{
		$ok = IPC::Run::run([ 'pg_restore', '-d', $node->connstr($db), $file ], '>', \$out, '2>', \$err);
	}
	else
	{
		$ok = IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
			'>', \$out, '2>', \$err);
	}
	ok($ok, "the $format dump restores");
	is($err, '', "with no error and no warning ($format)");

	my $after = PankhaData::digests($node, $db);
	my @differ = grep { ($after->{$_} // 'missing') ne $before->{$_} } sort keys %$before;
	is(scalar(@differ), 0, "every table of pankha has the same rows after the $format restore ("
		. scalar(keys %$before) . ' tables)')
		or diag(join("\n", map { "$_: $before->{$_} before, " . ($after->{$_} // 'missing') . ' after' } @differ));
	my @extra = grep { !exists $before->{$_} } sort keys %$after;
	is(scalar(@extra), 0, "and no table the source lacks ($format)") or diag(join(', ', @extra));
	is($node->safe_psql($db, q{SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
	                            WHERE c.relname ~ '^(readings|rollup_1m|rollup_1h)_[0-9]+$' AND i.indisprimary}),
		$node->safe_psql('src', q{SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
	                            WHERE c.relname ~ '^(readings|rollup_1m|rollup_1h)_[0-9]+$' AND i.indisprimary}),
		"every partition has its primary key again ($format)");

	# New rows continue the restored sequences.
	is($node->safe_psql($db, q{WITH m AS (SELECT max(connection_id) AS last FROM pankha.connections)
	                            SELECT pankha.connection_opened('box', 'bridge-c') > m.last FROM m}),
		't', "connection ids continue after the restored ones ($format)");

	PankhaData::works($node, $db, $keys, "restored from $format");
}

$node->stop;
done_testing();
