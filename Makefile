# Aurora tunnel — build, run, test.
#   make run    install missing packages, build, start server + local agent
#   make test   install missing packages, build (ASan+UBSan), run every test
#   make fuzz   run every libFuzzer target for FUZZ_SECONDS (default 60) each
# Sources are picked up by wildcard: a new file in common/, server/,
# server/connectors/ or agent/
# needs no Makefile edit.

CC      ?= cc
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers
INCS    := -Icommon -Iserver -Iserver/connectors -Iagent

SERVER_PKGS := libwebsockets libcjson libcurl yaml-0.1 sqlite3 openssl libpq hiredis
AGENT_PKGS  := libwebsockets libcjson yaml-0.1 openssl libseccomp libcares
PKG_CFLAGS  := $(shell pkg-config --cflags $(SERVER_PKGS) libcares 2>/dev/null)
SERVER_LIBS := $(shell pkg-config --libs $(SERVER_PKGS) 2>/dev/null) -lev -lpthread -lm
AGENT_LIBS  := $(shell pkg-config --libs $(AGENT_PKGS) 2>/dev/null) -lpthread -lm
TEST_LIBS   := $(SERVER_LIBS) $(shell pkg-config --libs libseccomp libcares 2>/dev/null) -lcmocka

REL_FLAGS  := -O2 -g $(CSTD) $(WARN) $(INCS) $(PKG_CFLAGS) -MMD -MP
# The sanitizer build (tests, fuzz targets): clang with ASan+UBSan and
# libFuzzer's coverage instrumentation (-fsanitize=fuzzer-no-link), so that one
# set of objects serves the test binaries and the libFuzzer targets alike (the
# project's code compiled once for both, not twice).  Without libFuzzer linked
# in, the coverage hooks are the sanitizer runtime's empty defaults.
ASAN_CC    := clang
ASAN_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(ASAN_SAN) \
              $(CSTD) $(WARN) $(INCS) $(PKG_CFLAGS) -MMD -MP

# The unit tests' own files (tests/unit/, tests/tools/) are glue around the
# code under test, which keeps -O1 in its libraries: compiled at -O0 they take
# a third of the time (4 of them: 10.6 s at -O1, 3.2 s at -O0): the sanitizer
# binaries plus unit tests went from 186 to 126 CPU seconds, and the unit
# tests' own CPU time did not change measurably (97 s).
ASAN_TEST_FLAGS := $(patsubst -O1,-O0,$(ASAN_FLAGS))

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c server/connectors/*.c))
AGENT_SRC  := $(filter-out agent/main.c,$(wildcard agent/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
# The web console's static files, compiled into aurora-server as C arrays
# (server/console/embed.sh): a generated source of the server library.  The
# directory is a prerequisite too, so adding or removing a file rebuilds it.
CONSOLE_ASSETS := $(sort $(wildcard server/console/assets/*))
CONSOLE_GEN    := build/gen/console_assets_data.c
SERVER_SRC     += $(CONSOLE_GEN)

# $(call objs,variant,sources)
objs = $(patsubst %.c,build/$(1)/%.o,$(2))

REL  := build/rel
ASAN := build/asan
NPROC := $(shell nproc 2>/dev/null || echo 2)

# Keep every built file: the unit tests' objects are intermediate files of the
# $(ASAN)/tests/% pattern rule, which make would delete (and rebuild next time).
.SECONDARY:

.PHONY: all deps test-deps run test unit integration bench clean help fuzz
all: $(REL)/aurora-server $(REL)/aurora-agent

help:
	@sed -n '1,8p' Makefile

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

# ---- object rules ---------------------------------------------------------
$(CONSOLE_GEN): $(CONSOLE_ASSETS) server/console/assets server/console/embed.sh
	@mkdir -p $(dir $@)
	@server/console/embed.sh $@ $(CONSOLE_ASSETS)

# Each variant's compiler and flags are kept in build/<variant>/.flags,
# rewritten only when they change: a prerequisite of every object, so that a
# changed compiler or flag (a Makefile edit) rebuilds the objects it made.
.PHONY: FORCE
build/%/.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_$*)' | cmp -s - $@ || echo '$(FLAGS_$*)' >$@
FLAGS_rel  = $(CC) $(REL_FLAGS)
FLAGS_asan = $(ASAN_CC) $(ASAN_FLAGS) tests: $(ASAN_TEST_FLAGS)

build/rel/%.o: %.c build/rel/.flags
	@mkdir -p $(dir $@)
	$(CC) $(REL_FLAGS) -c $< -o $@

build/asan/%.o: %.c build/asan/.flags
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_FLAGS) -c $< -o $@

build/asan/tests/unit/%.o: tests/unit/%.c build/asan/.flags
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_TEST_FLAGS) -c $< -o $@

build/asan/tests/tools/%.o: tests/tools/%.c build/asan/.flags
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_TEST_FLAGS) -c $< -o $@

# ---- libraries and binaries, per variant ------------------------------------
# $(call variant,dir,object dir,link flags,linker)
define variant
$(1)/libcommon.a: $(call objs,$(2),$(COMMON_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/libserver.a: $(call objs,$(2),$(SERVER_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/libagent.a: $(call objs,$(2),$(AGENT_SRC))
	@rm -f $$@; ar rcs $$@ $$^
$(1)/aurora-server: build/$(2)/server/main.o $(1)/libserver.a $(1)/libcommon.a
	$(4) $(3) $$^ -o $$@ $(SERVER_LIBS)
$(1)/aurora-agent: build/$(2)/agent/main.o $(1)/libagent.a $(1)/libcommon.a
	$(4) $(3) $$^ -o $$@ $(AGENT_LIBS)
endef
$(eval $(call variant,$(REL),rel,,$$(CC)))
# Load generator (bench/swarm.c): thousands of simulated agents in one process.
# Not part of `all` or `test`: `make bench` or `make build/rel/aurora-swarm`.
$(REL)/aurora-swarm: build/rel/bench/swarm.o $(REL)/libagent.a $(REL)/libcommon.a
	$(CC) $^ -o $@ $(AGENT_LIBS) -lev
# What one wake-up of another thread costs here (bench/hop_bench.c).
$(REL)/hop_bench: build/rel/bench/hop_bench.o
	$(CC) $^ -o $@ -pthread
# What it costs a new program to start on another CPU than its parent's.
$(REL)/exec_bench: build/rel/bench/exec_bench.o
	$(CC) $^ -o $@ -pthread
# LLVM's linker where installed (scripts/install-deps.sh --test installs it):
# about 90 sanitizer binaries are linked against the same big archives, and
# lld takes 0.2 s where GNU ld took 0.6 s each.
ASAN_FUSE_LD := $(if $(shell command -v ld.lld 2>/dev/null),-fuse-ld=lld)
ASAN_LD := $(ASAN_SAN) $(ASAN_FUSE_LD)
$(eval $(call variant,$(ASAN),asan,$$(ASAN_LD),$$(ASAN_CC)))

UNIT_BINS := $(patsubst tests/unit/%.c,$(ASAN)/tests/%,$(UNIT_SRC))
# Test-only commands on the store (tests/tools/aurora-testctl.c): not shipped.
TESTCTL := $(ASAN)/aurora-testctl
$(TESTCTL): build/asan/tests/tools/aurora-testctl.o $(ASAN)/libserver.a $(ASAN)/libcommon.a
	$(ASAN_CC) $(ASAN_LD) $^ -o $@ $(SERVER_LIBS)
$(ASAN)/tests/%: build/asan/tests/unit/%.o $(ASAN)/libserver.a $(ASAN)/libagent.a $(ASAN)/libcommon.a
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_LD) $^ -o $@ $(TEST_LIBS)

# ---- libFuzzer targets (tests/fuzz/fuzz_*.c) ----------------------------------
# Linked from the sanitizer build's objects (already instrumented for
# libFuzzer, above); each target's main() comes from libFuzzer
# (-fsanitize=fuzzer at link time).
FUZZ       := build/fuzz
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FUZZ)/%,$(FUZZ_SRC))
# both programs' libraries (the targets link server and agent code) + c-ares (fuzz_dns)
FUZZ_LIBS  := $(SERVER_LIBS) $(AGENT_LIBS) $(shell pkg-config --libs libcares 2>/dev/null)

$(FUZZ)/fuzz_%: build/asan/tests/fuzz/fuzz_%.o $(ASAN)/libserver.a $(ASAN)/libagent.a \
                $(ASAN)/libcommon.a
	@mkdir -p $(dir $@)
	$(ASAN_CC) -fsanitize=fuzzer $(ASAN_LD) $^ -o $@ $(FUZZ_LIBS)

# ---- the two commands -------------------------------------------------------
run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-local.sh

test: test-deps
	@$(MAKE) --no-print-directory -j$(NPROC) $(ASAN)/aurora-server $(ASAN)/aurora-agent $(TESTCTL) \
	    $(UNIT_BINS) $(FUZZ_BINS) all
	@tests/run-all.sh

unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

integration: $(ASAN)/aurora-server $(ASAN)/aurora-agent $(TESTCTL)
	@tests/run-integration.sh

# The web console in headless chromium (tests/browser/; also part of `make test`).
.PHONY: browser
browser: $(ASAN)/aurora-server $(ASAN)/aurora-agent
	@tests/run-browser.sh

# Every target for FUZZ_SECONDS; new inputs accumulate in build/fuzz/corpus/,
# crashes are saved in build/fuzz/artifacts/ (tests/fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz: test-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run-fuzz.sh --long

bench: deps test-deps
	@$(MAKE) --no-print-directory all $(REL)/aurora-swarm $(REL)/hop_bench $(REL)/exec_bench
	@bench/run.sh
	@$(REL)/hop_bench | tee build/bench-hops-latest.txt
	@$(REL)/exec_bench | tee build/bench-exec-latest.txt
	@bench/agent_bench.sh | tee build/bench-agent-latest.txt
	@python3 bench/webhook_bench.py | tee build/bench-webhooks-latest.txt
	@python3 bench/replicas_bench.py | tee build/bench-replicas-latest.txt
	@python3 bench/swarm_bench.py | tee build/bench-swarm-latest.txt
	@python3 bench/listen_share_bench.py | tee build/bench-listen-share-latest.txt
	@python3 bench/bigout_bench.py | tee build/bench-bigout-latest.txt

clean:
	rm -rf build

-include $(shell find build -type f -name '*.d' 2>/dev/null)

# ---- fully static agent (scripts/build-static-agent.sh; Dockerfile.agent runs the same) ----
.PHONY: static-agent
static-agent:
	@scripts/build-static-agent.sh build/static/aurora-agent
