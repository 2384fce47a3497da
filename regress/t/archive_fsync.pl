# L8 of the 2026-12 review (issue 13): a partition past its retention is
# archived, and the archive file and its directory entry are synced to
# disk, before the partition is dropped.  The server finds a "sync" of ours
# first on its PATH that records what it was asked to sync (and then runs
# the real one), so the test sees each sync and what existed at that moment.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $archive = PostgreSQL::Test::Utils::tempdir();
my $bin = PostgreSQL::Test::Utils::tempdir();
my $record = "$bin/sync.log";
my $real_sync = -x '/bin/sync' ? '/bin/sync' : '/usr/bin/sync';
open(my $fh, '>', "$bin/sync") or die "cannot write $bin/sync: $!";
print $fh <<"SH";
#!/bin/sh
# each argument, and whether the partition's archive exists under its final name yet
for f in "\$@"; do
    if ls "$archive"/*.csv.gz >/dev/null 2>&1; then final=final; else final=none; fi
    echo "\$f \$final" >> "$record"
done
exec $real_sync "\$@"
SH
close($fh);
chmod 0755, "$bin/sync";

my $node = PostgreSQL::Test::Cluster->new('archive');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pankha'
pankha.database = 'postgres'
pankha.worker_enabled = off
pankha.archive_directory = '$archive'
# what is archived must really be on disk: the point of this test
fsync = on
});
{
	local $ENV{PATH} = "$bin:$ENV{PATH}";
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION pankha');

my $part = $node->safe_psql('postgres', q{
	SELECT pankha.register_agent('l8', 'L8') IS NOT NULL;
	SELECT pankha.ensure_partition(now() - interval '30 days');
	INSERT INTO pankha.readings (agent_id, ts, received_at, payload)
	SELECT 'l8', now() - interval '30 days', now() - interval '30 days', '\x00'::bytea;
	UPDATE pankha.rollup_state SET watermark = now();
	SELECT 'readings_' || to_char(now() AT TIME ZONE 'UTC' - interval '30 days', 'YYYYMMDD');
});
$part = (split /\n/, $part)[-1];

is($node->safe_psql('postgres', 'SELECT partition FROM pankha.drop_expired_partitions()'),
	"pankha.$part", 'the expired partition is dropped');
ok(-s "$archive/$part.csv.gz", 'after it was archived');
ok(!-e "$archive/$part.csv.gz.part", 'under its final name only');

my @synced = -e $record ? do { open(my $r, '<', $record) or die; map { chomp; $_ } <$r> } : ();
is_deeply(\@synced, ["$archive/$part.csv.gz.part none", "$archive final"],
	'the file was synced before it got its final name, then the directory holding that name');

my $rows = `gzip -dc "$archive/$part.csv.gz" | wc -l`;
chomp $rows;
is($rows, '2', 'and the archive holds the header and the row');

$node->stop('fast');
done_testing();
