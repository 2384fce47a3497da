# pg_dump keeps what the credentials, queue, settings, profiles and audit
# parts hold: a database restored from a plain dump authenticates the same
# tokens, resolves the same settings, delivers the same queued commands and
# has the same audit log, without auditing the restore itself.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pankha'\npankha.database = 'postgres'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->safe_psql('src', 'CREATE EXTENSION pankha');

my $agent_token = $node->safe_psql('src', q{SELECT pankha.register_agent('rig', 'Rig', 'rig.example')});
my $ui_token = $node->safe_psql('src', q{SELECT pankha.create_ui_token('alice', 'operator')});
my $key = $node->safe_psql('src', q{SELECT pankha.create_enrollment_key('rack', '1 day', 5)});
my $enrolled = $node->safe_psql('src', qq{SELECT pankha.enroll_agent('$key', 'rig-2', 'Rig 2')});
$node->safe_psql('src', q{
    INSERT INTO pankha.fans (agent_id, fan_id, slot) VALUES ('rig', 'cpu_fan', 0);
    INSERT INTO pankha.sensors (agent_id, sensor_id, slot) VALUES ('rig', 'cpu_temp', 0);
    SELECT pankha.set_fan_limits('rig', 'cpu_fan', 20, 90);
    SELECT pankha.create_group('rack');
    SELECT pankha.set_agent_group('rig', 'rack');
    SELECT pankha.set_setting('global', 'update_interval', '2');
    SELECT pankha.set_setting('group:rack', 'fan_step', '10');
    SELECT pankha.set_setting('agent:rig-2', 'log_level', '"debug"');
    SELECT pankha.create_profile('quiet', '[[30, 20], [70, 90]]', 3, 4);
    SELECT pankha.assign_profile('rig', 'cpu_fan', 'quiet', 'cpu_temp');
    SELECT pankha.set_audit_retention('30 days');
});
my $acked = $node->safe_psql('src', q{SELECT pankha.send_command('rig', 'emergency_stop', '{}', 'high')});
$node->safe_psql('src', qq{SELECT count(*) FROM pankha.claim_commands('{rig}', '1 hour', 1);
                           SELECT pankha.ack_command('rig', '$acked', true)});
$node->safe_psql('src', q{SELECT pankha.authenticate_agent('rig', 'pka_wrong')});

my $dump = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('src'), '-f', $dump ], 'pg_dump of a database with pankha');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst'), '-f', $dump ],
    'the dump restores without error');

# Every table of these parts has the same rows after the restore.
for my $table (qw(agents fans sensors tokens audit_log audit_settings commands agent_groups
                  agent_group_members settings fan_profiles fan_profile_assignments))
{
    my $sql = "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM pankha.$table t";
    my $before = $node->safe_psql('src', $sql);
    my $after = $node->safe_psql('dst', $sql);
    is($after, $before, "pankha.$table restored as it was ($before)");
}

is($node->safe_psql('dst', qq{SELECT pankha.authenticate_agent('rig', '$agent_token')}), 'rig',
    'the agent token still authenticates');
is($node->safe_psql('dst', qq{SELECT pankha.authenticate_agent('rig-2', '$enrolled')}), 'rig-2',
    'the enrolled agent token still authenticates');
is($node->safe_psql('dst', qq{SELECT user_name || '/' || role FROM pankha.authenticate_ui('$ui_token')}),
    'alice/operator', 'the dashboard token still authenticates');
is($node->safe_psql('dst', q{SELECT pankha.effective_settings('rig')}),
    $node->safe_psql('src', q{SELECT pankha.effective_settings('rig')}),
    'effective settings are the same');
is($node->safe_psql('dst', q{SELECT string_agg(command_type, ',' ORDER BY command_type)
                             FROM pankha.claim_commands('{rig,rig-2}')}),
    'apply_profile,update_settings,update_settings', 'the queued commands are delivered from the restored queue');

# New audit rows continue after the restored ones.
my $max_before = $node->safe_psql('dst', 'SELECT max(audit_id) FROM pankha.audit_log');
$node->safe_psql('dst', q{SELECT pankha.create_group('after-restore')});
my $new_id = $node->safe_psql('dst', q{SELECT audit_id FROM pankha.audit_log WHERE event = 'group.insert'
                                        AND details -> 'new' ->> 'group_name' = 'after-restore'});
cmp_ok($new_id, '>', $max_before, 'audit ids continue after the restored log');

$node->stop;
done_testing();
