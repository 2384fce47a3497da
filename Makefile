# Pankha — top-level build.
#
# The extension is built with PGXS; the bridge and the agent are built by
# their own Makefiles from here.  The extension version is defined once, in
# pankha.control, and read from there.

EXTENSION  = pankha
EXTVERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" pankha.control)

MODULE_big = pankha
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard extension/src/*.c))) \
             $(patsubst %.cpp,%.o,$(sort $(wildcard extension/src/*.cpp)))
PG_CPPFLAGS = -I$(srcdir)/extension/src
PG_CFLAGS  = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror=implicit-function-declaration
# json_fast.cpp wraps simdjson (libsimdjson-dev), built without exceptions.
PG_CXXFLAGS = -std=c++17 -fno-exceptions -fno-rtti
SHLIB_LINK = -lsimdjson -lstdc++ -lzstd

# The install script is assembled from the numbered parts in extension/sql,
# so each feature keeps its SQL in its own file.  Upgrade scripts and frozen
# scripts of earlier versions are shipped as they are.
SQL_PARTS  = $(sort $(wildcard extension/sql/[0-9][0-9]_*.sql))
DATA_built = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard extension/sql/$(EXTENSION)--*.sql)

EXTRA_CLEAN = extension/$(EXTENSION)--$(EXTVERSION).sql

# The regress and isolation suites, discovered from their folders, for
# `make installcheck` against an installed server (as pgvector and pg_cron
# do).  PGXS' own installcheck would run them from here; ours runs them from
# regress/, where their \i includes are relative to, so it is defined
# below instead.
REGRESS    = $(sort $(basename $(notdir $(wildcard regress/sql/*.sql))))
ISOLATION  = $(sort $(basename $(notdir $(wildcard regress/specs/*.spec))))
NO_INSTALLCHECK = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
# the JIT bitcode of C++ files is compiled by clang, whose default is C++14
BITCODE_CXXFLAGS += -std=c++17 -fno-exceptions -fno-rtti

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# The daemons and the dashboard live in their own folders; `make` builds
# them too (dashboard/Makefile: npm ci when needed, then esbuild into dashboard/dist).
SUBDIRS = bridge agent dashboard

all: subdirs
install: install-subdirs $(if $(SUBDIRS),install-man)
clean: clean-subdirs

# The daemons' man pages (hand-written in docs/man; regress/t/configuration_docs.pl
# checks that they name every flag).
MANDIR ?= /usr/local/share/man
.PHONY: install-man
install-man:
	install -D -m 644 docs/man/pankha-bridge.1 $(DESTDIR)$(MANDIR)/man1/pankha-bridge.1
	install -D -m 644 docs/man/pankha-agent.1 $(DESTDIR)$(MANDIR)/man1/pankha-agent.1

.PHONY: subdirs install-subdirs clean-subdirs test demo bench
subdirs:
	@for d in $(SUBDIRS); do [ ! -f $$d/Makefile ] || $(MAKE) -C $$d || exit 1; done
install-subdirs:
	@for d in $(SUBDIRS); do [ ! -f $$d/Makefile ] || $(MAKE) -C $$d install || exit 1; done
clean-subdirs:
	@for d in $(SUBDIRS); do [ ! -f $$d/Makefile ] || $(MAKE) -C $$d clean || exit 1; done

# make installcheck: the regress and isolation suites against the server
# PGHOST/PGPORT/PGUSER point at, into which `make install` has installed
# this extension.  What they need of it:
# - the settings of regress/pankha.conf: shared_preload_libraries = 'pankha'
#   (the suites test the GUCs, shared memory and the worker) and
#   pankha.database naming a database other than pankha_regression (the
#   worker then idles there and does not change the output);
# - PGUSER a superuser (pg_regress creates the database and roles);
# - PGHOST a Unix socket directory, not an address: the expected audit rows
#   have no client address, as over the socket.
# Results land in results/, differences in regression.diffs.
.PHONY: installcheck
installcheck:
	cd regress && $(pg_regress_installcheck) --inputdir=. --outputdir=.. \
		--dbname=pankha_regression $(REGRESS)
	cd regress && $(pg_isolation_regress_installcheck) --inputdir=. --outputdir=.. \
		--dbname=pankha_regression $(ISOLATION)

# The bridge and the agent built with ASan/LSan and UBSan (bridge/asan,
# agent/asan); PANKHA_ASAN=1 scripts/run-tests runs the tests with them.
.PHONY: asan
asan:
	$(MAKE) -C bridge asan
	$(MAKE) -C agent asan

# Convenience aliases for the README's two commands.
test:
	scripts/run-tests
demo:
	scripts/demo

# Installs only the extension (used for private test installations).
.PHONY: install-extension
install-extension: all-lib
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) install SUBDIRS=
