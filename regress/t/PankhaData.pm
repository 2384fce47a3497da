# Shared by the TAP tests that carry a database somewhere -- through
# pg_dump and pg_restore (dump_restore.pl), through ALTER EXTENSION UPDATE
# (upgrade_data.pl): fill a database with something of everything Pankha
# keeps, describe what it holds table by table, and check that it still
# works (ingest, claim, ack, rollup, history, alerts, tokens).  Only the
# functions of the released 0.1.0 are used to fill, so the upgrade test can
# fill a 0.1.0 database with it.
package PankhaData;
use strict;
use warnings;
use Test::More;

# fill(NODE, DB): returns a hash of what the checks need (tokens, ids).
sub fill
{
	my ($node, $db) = @_;
	my %k;
	my $q = sub { $node->safe_psql($db, shift) };

	$q->(q{
CREATE FUNCTION public.frame(agent text, ts timestamptz, cpu real, rpm integer DEFAULT 1200, seq bigint DEFAULT NULL)
RETURNS jsonb LANGUAGE sql IMMUTABLE
RETURN jsonb_strip_nulls(jsonb_build_object('agentId', agent, 'timestamp', (extract(epoch FROM ts) * 1000)::bigint,
    'seq', seq,
    'sensors', jsonb_build_array(jsonb_build_object('id', 'cpu_temp', 'type', 'cpu', 'temperature', cpu),
                                 jsonb_build_object('id', 'ssd_temp', 'type', 'nvme', 'temperature', 30 + cpu / 10)),
    'fans', jsonb_build_array(jsonb_build_object('id', 'cpu_fan', 'rpm', rpm, 'speed', 55)),
    'systemHealth', jsonb_build_object('cpuUsage', cpu / 2)));
SELECT pankha.ensure_partitions(now() - interval '6 days', now() + interval '1 day');
});
	# One moment the frames are placed around, so that a frame built again
	# later is the same frame.
	$k{base} = $q->(q{SELECT date_trunc('second', now())});
	$k{agent_token} = $q->(q{SELECT pankha.register_agent('rig', 'Rig', 'rig.example', '{"fans": 1}')});
	$k{other_token} = $q->(q{SELECT pankha.register_agent('box', 'Box')});
	$k{ui_token} = $q->(q{SELECT pankha.create_ui_token('alice', 'operator')});
	my $key = $q->(q{SELECT pankha.create_enrollment_key('rack', '1 day', 5)});
	$k{enrolled_token} = $q->(qq{SELECT pankha.enroll_agent('$key', 'rig-2', 'Rig 2')});
	$k{enrollment_key} = $q->(q{SELECT pankha.create_enrollment_key('spare', '1 day', 5)});

	# Frames on each of the last six days (one partition each), a minute
	# apart, for two agents; then rollups of all of them.
	$q->(qq{
SELECT count(pankha.ingest(a, public.frame(a, '$k{base}'::timestamptz - d * interval '1 day' - m * interval '1 minute',
                                          40 + m + d, 1000 + 10 * m, d * 100 + m)))
  FROM unnest(ARRAY['rig', 'box']) AS a, generate_series(0, 5) AS d, generate_series(1, 3) AS m;
});
	$q->(q{SELECT pg_sleep(1.2); SELECT frames FROM pankha.rollup(true)});

	# Configuration, settings, groups, profiles.
	$q->(q{
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

	# Commands in every state: queued, sent (claimed, not acked), acked,
	# failed, expired (ttl passed), dead (out of delivery attempts).
	$k{cmd_acked} = $q->(q{SELECT pankha.send_command('rig', 'emergency_stop', '{}', 'high')});
	$q->(qq{SELECT count(*) FROM pankha.claim_commands('{rig}', '1 hour', 100);
	        SELECT pankha.ack_command('rig', '$k{cmd_acked}', true)});
	$k{cmd_failed} = $q->(q{SELECT pankha.send_command('rig', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 50}')});
	$q->(qq{SELECT count(*) FROM pankha.claim_commands('{rig}', '1 hour', 100);
	        SELECT pankha.ack_command('rig', '$k{cmd_failed}', false, 'fan is in manual mode')});
	$k{cmd_sent} = $q->(q{SELECT pankha.send_command('box', 'emergency_stop', '{}')});
	$q->(q{SELECT count(*) FROM pankha.claim_commands('{box}', '1 hour', 100)});
	$k{cmd_expired} = $q->(q{SELECT pankha.send_command('rig-2', 'emergency_stop', '{}', 'normal', '1 second')});
	$k{cmd_dead} = $q->(q{SELECT pankha.send_command('rig-2', 'noop', '{}', 'low', '1 hour', NULL, 1)});
	$q->(q{SELECT count(*) FROM pankha.claim_commands('{rig-2}', '1 second', 100)});
	$q->(q{SELECT pg_sleep(1.1); SELECT pankha.expire_commands()});
	$k{cmd_pending} = $q->(q{SELECT pankha.send_command('box', 'set_fan_speed', '{"fan_id": "cpu_fan", "speed": 30}')});

	# Alerts: a rule that fired on a hot frame and resolved, one firing.
	$q->(q{
SELECT pankha.add_alert_rule('rig-hot', 'temperature_above', 70, cooldown => '0', agent_id => 'rig',
                             target_id => 'cpu_temp');
SELECT pankha.add_alert_rule('box-hot', 'temperature_above', 70, cooldown => '0', agent_id => 'box',
                             target_id => 'cpu_temp', severity => 'critical');
SELECT pankha.ingest(a, public.frame(a, clock_timestamp(), 85)) FROM unnest(ARRAY['rig', 'box']) a;
SELECT count(*) FROM pankha.update_agent_status();
SELECT pankha.evaluate_alerts();
SELECT pankha.ingest('rig', public.frame('rig', clock_timestamp() + interval '1 millisecond', 45));
SELECT pankha.evaluate_alerts();
});

	# Connection history and the agents' latest status reports.
	$q->(q{
SELECT pankha.connection_closed(pankha.connection_opened('rig', 'bridge-a', '192.0.2.7'), 1001, 'going away', 10, 4000, 2, 300);
SELECT pankha.connection_opened('rig', 'bridge-b', '192.0.2.7');
SELECT pankha.connection_opened('box', 'bridge-a', '192.0.2.9');
SELECT pankha.record_status('rig', '{"uptime": 120, "memoryMb": 12}');
SELECT pankha.authenticate_agent('rig', 'pka_wrong');
});
	$q->(q{SELECT pg_sleep(1.2); SELECT frames FROM pankha.rollup(true)});
	return \%k;
}

# digests(NODE, DB [, COLUMNS]): table name => "rows:md5" for every table
# of the pankha schema, partitions included, except the two rollup
# bookkeeping tables (the watermark and the hours queue), which a restored
# database starts afresh: its first rollup pass reads the raw frames again.
# With COLUMNS (table name => column list, as columns() gives), only those
# columns are digested, so that an upgrade that adds columns to a table can
# be compared with the rows it had.
sub digests
{
	my ($node, $db, $cols) = @_;
	my %d;
	my @tables = split /\n/, $node->safe_psql($db, q{
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'pankha' AND c.relkind = 'r'
		   AND c.relname NOT IN ('rollup_state', 'rollup_pending_hours')
		 ORDER BY 1});
	for my $t (@tables)
	{
		my $row = $cols && $cols->{$t} ? "row($cols->{$t})" : 't';
		$d{$t} = $node->safe_psql($db,
			"SELECT count(*) || ':' || md5(coalesce(string_agg($row\::text, '|' ORDER BY $row\::text), '')) FROM pankha.$t t");
	}
	return \%d;
}

# columns(NODE, DB): table name => its columns, "t.a, t.b, ...", for digests().
sub columns
{
	my ($node, $db) = @_;
	my %c;
	for my $line (split /\n/, $node->safe_psql($db, q{
		SELECT c.relname || '|' || string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		 WHERE n.nspname = 'pankha' AND c.relkind = 'r'
		 GROUP BY c.relname}))
	{
		my ($t, $list) = split /\|/, $line, 2;
		$c{$t} = $list;
	}
	return \%c;
}

# works(NODE, DB, KEYS, WHAT): the database authenticates the tokens filled
# in, ingests, claims and acks, rolls up and serves history.
sub works
{
	my ($node, $db, $k, $what) = @_;
	my $q = sub { $node->safe_psql($db, shift) };

	is($q->(qq{SELECT pankha.authenticate_agent('rig', '$k->{agent_token}')}), 'rig',
		"$what: the agent token authenticates");
	is($q->(qq{SELECT pankha.authenticate_agent('rig-2', '$k->{enrolled_token}')}), 'rig-2',
		"$what: the enrolled agent's token authenticates");
	is($q->(qq{SELECT user_name || '/' || role FROM pankha.authenticate_ui('$k->{ui_token}')}),
		'alice/operator', "$what: the dashboard token authenticates");
	is($q->(q{SELECT pankha.authenticate_agent('rig', 'pka_wrong')}), '',
		"$what: a wrong token is still refused");
	is($q->(qq{SELECT pankha.enroll_agent('$k->{enrollment_key}', 'rig-3', 'Rig 3') LIKE 'pka_%'}), 't',
		"$what: the enrollment key enrolls a new agent");

	# Ingest: a new frame is stored, a re-sent one is not, into old and new days.
	my $old = "'$k->{base}'::timestamptz - interval '3 days' - interval '30 seconds'";
	is($q->(qq{SELECT pankha.ingest('rig', public.frame('rig', $old, 50))}),
		't', "$what: ingest stores a new frame in an existing day partition");
	is($q->(qq{SELECT pankha.ingest('rig', public.frame('rig', $old, 50))}),
		'f', "$what: the re-sent frame is recognised (the partition's key holds)");
	is($q->(qq{SELECT pankha.ingest('box', public.frame('box', '$k->{base}'::timestamptz - interval '1 day' - interval '1 minute', 1))}),
		'f', "$what: a filled frame re-sent is recognised too");
	is($q->(q{SELECT pankha.ingest('rig-3', public.frame('rig-3', clock_timestamp(), 41))}), 't',
		"$what: ingest stores a frame of a new agent");

	# Commands: the pending one is delivered and acked; the sent one comes back.
	is($q->(q{SELECT string_agg(command_type, ',' ORDER BY command_type) FROM pankha.claim_commands('{box}', '1 second', 100)}),
		'set_fan_speed', "$what: the pending command is claimed");
	is($q->(qq{SELECT pankha.ack_command('box', '$k->{cmd_pending}', true)}), 'acked',
		"$what: and acked");
	is($q->(qq{SELECT status FROM pankha.commands WHERE command_id = '$k->{cmd_acked}'}), 'acked',
		"$what: the acked command is still acked");
	is($q->(qq{SELECT pankha.ack_command('rig', '$k->{cmd_acked}', false, 'late')}), 'acked',
		"$what: a second ack does not change it");

	# Rollups and history.
	$q->(q{SELECT pg_sleep(1.2)});
	my $rolled = $q->(q{SELECT frames FROM pankha.rollup(true)});
	cmp_ok($rolled, '>=', 2, "$what: a rollup pass reads the new frames ($rolled)");
	is($q->(qq{SELECT samples FROM pankha.rollup_1m WHERE agent_id = 'rig' AND kind = 'r'
	          AND bucket = date_bin('1 minute', $old, pankha.bucket_origin())}),
		$q->(qq{SELECT count(*) FROM pankha.readings WHERE agent_id = 'rig'
		        AND date_bin('1 minute', ts, pankha.bucket_origin()) = date_bin('1 minute', $old, pankha.bucket_origin())}),
		"$what: the new old frame is counted in its 1-minute bucket");
	is($q->(q{SELECT count(*) FROM pankha.history('rig', 'cpu_temp', now() - interval '6 days', now())}),
		$q->(q{SELECT count(DISTINCT date_bin('1 hour', ts, pankha.bucket_origin())) FROM pankha.sensor_readings
		        WHERE agent_id = 'rig' AND sensor_id = 'cpu_temp'}),
		"$what: history over six days has a bucket per hour with frames");
	is($q->(q{SELECT round(max(max)::numeric, 2) FROM pankha.history('rig', 'cpu_temp', now() - interval '6 days', now())}),
		'85.00', "$what: and the hottest reading in it");
	is($q->(q{SELECT count(*) FROM pankha.history('rig', 'cpu_temp', now() - interval '1 hour', now())}),
		$q->(q{SELECT count(*) FROM pankha.sensor_readings WHERE agent_id = 'rig' AND sensor_id = 'cpu_temp'
		        AND ts >= now() - interval '1 hour'}),
		"$what: raw history of the last hour has every frame");
	is($q->(q{SELECT string_agg(rule_name || '=' || state, ',' ORDER BY rule_name) FROM pankha.alerts}),
		'box-hot=firing,rig-hot=resolved', "$what: the alerts are there as they were");
}

1;
