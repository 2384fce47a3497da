# The supported setup is shared_preload_libraries = 'pankha'.  Without it,
# ingest says clearly what is wrong; with it, liveness kept in shared memory
# reaches pankha.agents through the worker, and stored frames survive a
# restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION pankha');
$plain->safe_psql('postgres', q{SELECT pankha.register_agent('a1', 'A1')});
my ($ret, $out, $err) = $plain->psql('postgres',
    q{SELECT pankha.ingest('a1', '{"timestamp": 1}')});
isnt($ret, 0, 'ingest fails without the preloaded library');
like($err, qr/pankha must be loaded via shared_preload_libraries/, 'and says why');
like($err, qr/HINT:  Add 'pankha' to shared_preload_libraries/, 'and how to fix it');
($ret, $out, $err) = $plain->psql('postgres', q{SELECT * FROM pankha.agent_liveness()});
like($err, qr/shared_preload_libraries/, 'the liveness table says the same');
$plain->stop;

my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pankha'
pankha.database = 'postgres'
pankha.naptime = 1
pankha.liveness_flush = 1
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pankha');
$node->safe_psql('postgres', q{SELECT pankha.register_agent('a1', 'A1')});
# One repeatable-read transaction: it sees its own writes but not the
# worker's flush, which may come at any moment (pankha.liveness_flush = 1).
my ($stored, $untouched) = split /\n/, $node->safe_psql('postgres', q{
    BEGIN ISOLATION LEVEL REPEATABLE READ;
    SELECT pankha.ingest('a1', format('{"timestamp": %s, "seq": 1, "sensors": [{"id": "t", "temperature": 40}]}',
                                      floor(extract(epoch FROM now()) * 1000))::text);
    SELECT last_seen IS NULL FROM pankha.agents;
    COMMIT;});
is($stored, 't', 'a frame is stored');
is($untouched, 't', 'ingest itself does not update the agents row');
ok($node->poll_query_until('postgres', q{SELECT last_seen IS NOT NULL FROM pankha.agents WHERE agent_id = 'a1'}),
   'the worker persists liveness from shared memory');

$node->restart;
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.sensor_readings}), '1',
   'the frame survives a restart');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pankha.agent_liveness()}), '0',
   'shared memory starts empty after a restart');
is($node->safe_psql('postgres', q{SELECT last_seen IS NOT NULL FROM pankha.agents}), 't',
   'while the persisted last_seen stays');
$node->stop;

done_testing();
