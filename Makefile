# Aurora tunnel — build, run, test.
#   make run    install missing packages, build, start server + local agent
#   make test   install missing packages, build (ASan+UBSan), run every test
# Sources are picked up by wildcard: a new file in common/, server/ or agent/
# needs no Makefile edit.

CC      ?= cc
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers
INCS    := -Icommon -Iserver -Iagent

SERVER_PKGS := libwebsockets libcjson libcurl yaml-0.1 sqlite3 openssl libpq
AGENT_PKGS  := libwebsockets libcjson yaml-0.1 openssl libseccomp
PKG_CFLAGS  := $(shell pkg-config --cflags $(SERVER_PKGS) 2>/dev/null)
SERVER_LIBS := $(shell pkg-config --libs $(SERVER_PKGS) 2>/dev/null) -lpthread
AGENT_LIBS  := $(shell pkg-config --libs $(AGENT_PKGS) 2>/dev/null) -lpthread
TEST_LIBS   := $(SERVER_LIBS) $(shell pkg-config --libs libseccomp 2>/dev/null) -lcmocka

REL_FLAGS  := -O2 -g $(CSTD) $(WARN) $(INCS) $(PKG_CFLAGS) -MMD -MP
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined $(CSTD) $(WARN) $(INCS) $(PKG_CFLAGS) -MMD -MP

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
AGENT_SRC  := $(filter-out agent/main.c,$(wildcard agent/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

# $(call objs,variant,sources)
objs = $(patsubst %.c,build/$(1)/%.o,$(2))

REL  := build/rel
ASAN := build/asan
NPROC := $(shell nproc 2>/dev/null || echo 2)

# Keep every built file: the unit tests' objects are intermediate files of the
# $(ASAN)/tests/% pattern rule, which make would delete (and rebuild next time).
.SECONDARY:

.PHONY: all deps test-deps run test unit integration bench clean help
all: $(REL)/aurora-server $(REL)/aurora-agent

help:
	@sed -n '1,6p' Makefile

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

# ---- object rules ---------------------------------------------------------
build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_FLAGS) -c $< -o $@

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_FLAGS) -c $< -o $@

# ---- libraries and binaries, per variant ------------------------------------
define variant
$(1)/libcommon.a: $(call objs,$(2),$(COMMON_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/libserver.a: $(call objs,$(2),$(SERVER_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/libagent.a: $(call objs,$(2),$(AGENT_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/aurora-server: build/$(2)/server/main.o $(1)/libserver.a $(1)/libcommon.a
	$$(CC) $(3) $$^ -o $$@ $(SERVER_LIBS)
$(1)/aurora-agent: build/$(2)/agent/main.o $(1)/libagent.a $(1)/libcommon.a
	$$(CC) $(3) $$^ -o $$@ $(AGENT_LIBS)
endef
$(eval $(call variant,$(REL),rel,))
ASAN_LD := -fsanitize=address,undefined
$(eval $(call variant,$(ASAN),asan,$$(ASAN_LD)))

UNIT_BINS := $(patsubst tests/unit/%.c,$(ASAN)/tests/%,$(UNIT_SRC))
$(ASAN)/tests/%: build/asan/tests/unit/%.o $(ASAN)/libserver.a $(ASAN)/libagent.a $(ASAN)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_LD) $^ -o $@ $(TEST_LIBS)

# ---- the two commands -------------------------------------------------------
run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-local.sh

test: test-deps
	@$(MAKE) --no-print-directory -j$(NPROC) $(ASAN)/aurora-server $(ASAN)/aurora-agent $(UNIT_BINS) all
	@tests/run-all.sh

unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

integration: $(ASAN)/aurora-server $(ASAN)/aurora-agent
	@tests/run-integration.sh

bench: deps test-deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh
	@bench/agent_bench.sh | tee build/bench-agent-latest.txt

clean:
	rm -rf build

-include $(shell find build -type f -name '*.d' 2>/dev/null)

# ---- fully static agent (scripts/build-static-agent.sh; Dockerfile.agent runs the same) ----
.PHONY: static-agent
static-agent:
	@scripts/build-static-agent.sh build/static/aurora-agent
