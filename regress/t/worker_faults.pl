# The pankha worker in bad surroundings: a database that does not exist
# (yet), and a standby, where it must not run until promotion.  The server
# stays up throughout and the log says what is going on.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

# Wait for a log line like wait_for_log, but return false on a timeout
# instead of dying, so a missing line is one failed check (audit 14).
sub log_appears
{
	my ($node, $re, $offset) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if slurp_file($node->logfile, $offset // 0) =~ $re;
		Time::HiRes::usleep(100_000);
	}
	return 0;
}

# ---------------------------------------------------------------------
# A lost database: the worker says so, is restarted, and connects once
# the database is there.
# ---------------------------------------------------------------------
my $lost = PostgreSQL::Test::Cluster->new('lost');
$lost->init;
$lost->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pankha'
pankha.database = 'fleet'
pankha.naptime = 1
});
$lost->start;
ok(log_appears($lost, qr/database "fleet" does not exist/), 'the worker logs that its database does not exist');
is($lost->safe_psql('postgres', 'SELECT 1'), '1', 'the server stays up');
my $offset = -s $lost->logfile;
ok(log_appears($lost, qr/database "fleet" does not exist/, $offset), 'the worker is started again and tries again');
$lost->safe_psql('postgres', 'CREATE DATABASE fleet');
$lost->safe_psql('fleet', 'CREATE EXTENSION pankha');
$lost->wait_for_log(qr/pankha worker is maintaining database "fleet"/, $offset);
ok($lost->poll_query_until('fleet', 'SELECT last_pass IS NOT NULL FROM pankha.rollup_state'),
	'once the database exists the worker connects and works');
$lost->stop('fast');

# ---------------------------------------------------------------------
# A standby: no worker while in recovery; it starts on promotion.
# ---------------------------------------------------------------------
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pankha'
pankha.database = 'postgres'
pankha.naptime = 1
pankha.liveness_flush = 1
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION pankha');
$primary->safe_psql('postgres', q{
	SELECT pankha.register_agent('s1', 'Standby test') IS NOT NULL;
	SELECT pankha.ingest_batch('s1', (SELECT jsonb_agg(jsonb_build_object(
	    'timestamp', (extract(epoch FROM now() - interval '5 minutes' + i * interval '10 seconds') * 1000)::bigint,
	    'sensors', jsonb_build_array(jsonb_build_object('id', 't', 'temperature', 40 + i))))
	  FROM generate_series(0, 20) i));
});
ok($primary->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pankha.sensor_1m}),
	'the primary rolls up');
$primary->backup('b');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT count(*) > 0 FROM pankha.sensor_1m}), 't',
	'the standby serves the rollups');
# "No worker" is checked after the standby had its chance to start one,
# not after a fixed sleep: the primary's worker makes two more passes
# (naptime 1 s) and the standby replays them, all while in recovery.
my $pass = $primary->safe_psql('postgres', 'SELECT last_pass FROM pankha.rollup_state');
ok($primary->poll_query_until('postgres', "SELECT last_pass > '$pass' FROM pankha.rollup_state"),
	'the primary\'s worker makes a pass after the standby started');
$pass = $primary->safe_psql('postgres', 'SELECT last_pass FROM pankha.rollup_state');
ok($primary->poll_query_until('postgres', "SELECT last_pass > '$pass' FROM pankha.rollup_state")
	&& do { $primary->wait_for_catchup($standby); 1 }
	&& $standby->poll_query_until('postgres', "SELECT last_pass > '$pass' FROM pankha.rollup_state"),
	'and another, which the standby replays');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pankha worker'}),
	'0', 'no worker runs on the standby');
unlike(slurp_file($standby->logfile), qr/pankha worker started|ERROR|FATAL/,
	'and its log has neither a worker nor an error');

$primary->stop('fast');
$standby->promote;
$standby->wait_for_log(qr/pankha worker started in database "postgres"/);
$standby->wait_for_log(qr/pankha worker is maintaining database "postgres"/);
my $before = $standby->safe_psql('postgres', 'SELECT last_pass FROM pankha.rollup_state');
ok($standby->poll_query_until('postgres', "SELECT last_pass > '$before' FROM pankha.rollup_state"),
	'after promotion the worker starts and makes passes');
$standby->stop('fast');

done_testing();
