/*
 * extversion.c - checks, each time the database connection is established
 * again, that the pankha extension installed in the database is a version
 * this bridge works with.
 *
 * The bridge calls the extension's functions by name and relies on the
 * shape of their arguments and results.  Those change only with a minor
 * version (0.2 -> 0.3); a patch version (0.2.0 -> 0.2.1) keeps them.  So a
 * bridge works with every version of its own minor series from the first
 * that has what it calls, and with nothing else: during a rolling upgrade
 * (extension first, then the bridges) an older bridge keeps working against
 * a newer patch release and refuses a newer minor version, saying which
 * range it works with, instead of calling functions it no longer knows.
 * Refusing stops the bridge (exit status 3), so that a supervisor shows it
 * and nothing half-works.
 */
#include "extversion.h"
#include "db.h"
#include "server.h"
#include "util.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The oldest extension version with everything this bridge calls. */
#define EXT_MIN_MAJOR	0
#define EXT_MIN_MINOR	2
#define EXT_MIN_PATCH	0

/* Parse "a.b.c" (or "a.b"); false for anything else. */
static bool
parse_version(const char *s, int v[3])
{
	int			n = 0;
	char		tail;

	v[2] = 0;
	n = sscanf(s, "%d.%d.%d%c", &v[0], &v[1], &v[2], &tail);
	return (n == 2 || n == 3) && v[0] >= 0 && v[1] >= 0 && v[2] >= 0;
}

/* The range, as the refusal and --help say it. */
const char *
extversion_range(void)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%d.%d.%d up to, not including, %d.%d.0",
			 EXT_MIN_MAJOR, EXT_MIN_MINOR, EXT_MIN_PATCH, EXT_MIN_MAJOR, EXT_MIN_MINOR + 1);
	return buf;
}

/* Whether this bridge works with that extension version. */
bool
extversion_supported(const char *version)
{
	int			v[3];

	if (!parse_version(version, v))
		return false;
	return v[0] == EXT_MIN_MAJOR && v[1] == EXT_MIN_MINOR && v[2] >= EXT_MIN_PATCH;
}

static void
version_done(struct db_query *q, PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		/* the connection went away again: the next ready asks again */
		blog("warn", "extension", "cannot read the extension's version: %s",
			 PQresultErrorMessage(res));
		return;
	}
	if (PQntuples(res) == 0)
	{
		blog("error", "extension",
			 "the extension pankha is not installed in this database (CREATE EXTENSION pankha); "
			 "pankha-bridge %s works with pankha %s", BRIDGE_VERSION, extversion_range());
		server_stop(3);
		return;
	}
	if (!extversion_supported(PQgetvalue(res, 0, 0)))
	{
		blog("error", "extension",
			 "the database has pankha %s; pankha-bridge %s works with pankha %s: "
			 "upgrade the bridge (or ALTER EXTENSION pankha UPDATE, if the extension is older)",
			 PQgetvalue(res, 0, 0), BRIDGE_VERSION, extversion_range());
		server_stop(3);
		return;
	}
	blog("info", "extension", "pankha %s in the database", PQgetvalue(res, 0, 0));
}

/* Once the connection is back (and at start), ask which version is there. */
static void
on_ready(void)
{
	struct db_query *q = db_query_new(LANE_GENERAL,
									  "SELECT extversion FROM pg_catalog.pg_extension "
									  "WHERE extname = 'pankha'", version_done, NULL);

	if (q)
		db_submit(q);
}

int
extversion_init(void)
{
	return db_on_listen_ready(on_ready);
}
