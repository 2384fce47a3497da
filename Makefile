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
SHLIB_LINK = -lsimdjson -lstdc++

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
# the JIT bitcode of C++ files is compiled by clang, whose default is C++14
BITCODE_CXXFLAGS += -std=c++17 -fno-exceptions -fno-rtti

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# The daemons live in their own folders; `make` builds them too.
SUBDIRS = bridge agent

all: subdirs
install: install-subdirs
clean: clean-subdirs

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
