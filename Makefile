# Pankha — top-level build.
#
# The extension is built with PGXS; the bridge and the agent are built by
# their own Makefiles from here.  The extension version is defined once, in
# pankha.control, and read from there.

EXTENSION  = pankha
EXTVERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" pankha.control)

MODULE_big = pankha
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard extension/src/*.c)))
PG_CPPFLAGS = -I$(srcdir)/extension/src
PG_CFLAGS  = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror=implicit-function-declaration

# The install script is assembled from the numbered parts in extension/sql,
# so each feature keeps its SQL in its own file.  Upgrade scripts and frozen
# scripts of earlier versions are shipped as they are.
SQL_PARTS  = $(sort $(wildcard extension/sql/[0-9][0-9]_*.sql))
DATA_built = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard extension/sql/$(EXTENSION)--*.sql)

EXTRA_CLEAN = extension/$(EXTENSION)--$(EXTVERSION).sql

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# The daemons live in their own folders; `make` builds them too.
SUBDIRS = bridge agent

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

# Convenience aliases for the README's two commands.
test:
	scripts/run-tests
demo:
	scripts/demo

# Installs only the extension (used for private test installations).
.PHONY: install-extension
install-extension: all-lib
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) install SUBDIRS=
