# Makefile -- how to build, test and poke at Conclave. The targets are the documentation.
#
#   make [all]        release build in build/: libconclave.a, conclave, libsim.a,
#                     conclave-sim, tests/test_*
#   make run          install deps, build, run `build/conclave serve`
#   make test         install deps, build build/asan/ (ASan+UBSan), run scripts/run-tests.sh
#   make bench        time the simulator, then Conclave vs etcd (scripts/bench.sh)
#   make soak         MINUTES=N of simulator seeds on the release build
#   make chaos        MINUTES=N WORKLOAD=register NEMESIS=kill|pause|partition|mixed against
#                     real servers; histories and summary in build/chaos/<timestamp>/
#   make sim-mutants  build each RAFT_MUTANT_* / SIM_MUTANT_* and check the simulator catches it
#   make fuzz         build tests/fuzz/fuzz_*.c with libFuzzer, run each FUZZ_SECONDS
#   make install      PREFIX=/usr/local DESTDIR=: the client headers, libconclave-client.a,
#                     conclave.pc (pkg-config) and the conclave binary
#   make fmt | lint | clean
#
# Invariants:
#  - Sources are found by wildcard. A new src/**/*.c joins libconclave.a, a new sim/*.c
#    joins libsim.a, a new tests/unit/test_*.c becomes its own cmocka binary. The
#    entry points src/main.c and sim/main.c are linked only if they exist.
#  - One build dir $(B) holds one flavour. Its compiler and flags are recorded in
#    $(B)/.flags; when they change (e.g. CC=clang), everything in $(B) rebuilds.
#  - Flavours (asan, mutants, fuzz) are these same rules run by a recursive $(MAKE) with
#    another B, so they sit side by side and are safe under -j.
#
# Sections: knobs | flags | sources | build rules | flavours | run/test/bench | hygiene.

# ---- knobs (override on the command line: make CC=clang WERROR=1) ----------------------
CC           ?= cc
AR           ?= ar
B            ?= build
WERROR       ?= 0
SAN          ?=
EXTRA_CFLAGS ?=
MINUTES      ?= 10
FUZZ_SECONDS ?= 60
V            ?= 0

MUTANTS := COMMIT_PREV_TERM VOTE_NO_UPTODATE VOTE_BEFORE_PERSIST APPEND_ACK_BEFORE_PERSIST READINDEX_EARLY ACCEPT_STALE_TERM SIM_KEEPALIVE_NO_READINDEX SIM_NO_LEASE_EXTEND SIM_EXPIRE_NO_QUORUM

MAKEFLAGS += --no-print-directory
SHELL     := /bin/bash
.DELETE_ON_ERROR:
.SECONDARY:             # keep test objects that pattern chains would delete
.DEFAULT_GOAL := all

# `make clean all` must not race the two goals under -j.
ifneq ($(filter clean,$(MAKECMDGOALS)),)
.NOTPARALLEL:
endif

# ---- flags ------------------------------------------------------------------------------
# -Wno-unused-parameter: env-table callbacks and cmocka's `void **state` ignore arguments
# by design; silencing each one would be noise.
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ifeq ($(SAN),asan)
OPT         := -O1 -g $(ASAN_FLAGS)
SAN_LDFLAGS := $(ASAN_FLAGS)
else ifeq ($(SAN),fuzz)
OPT         := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
SAN_LDFLAGS := -fsanitize=fuzzer,address,undefined
else
OPT         := -O2 -g
SAN_LDFLAGS :=
endif

# Asserts stay on in every flavour: nothing defines NDEBUG.
ALL_CPPFLAGS := -Isrc -Isim -Iinclude -D_POSIX_C_SOURCE=200809L $(CPPFLAGS)
ALL_CFLAGS   := -std=c17 $(OPT) $(WARN) -pthread $(CFLAGS) $(EXTRA_CFLAGS)
ALL_LDFLAGS  := -pthread $(SAN_LDFLAGS) $(LDFLAGS)
ALL_LDLIBS   := $(LDLIBS) -luv -lhttp_parser -ljansson -lcrypto -lm

ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2);
endif

# ---- sources ----------------------------------------------------------------------------
LIB_SRC  := $(filter-out src/main.c,$(sort $(shell find src -name '*.c' 2>/dev/null)))
SIM_SRC  := $(filter-out sim/main.c,$(sort $(wildcard sim/*.c)))
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

LIBCONCLAVE  := $(if $(LIB_SRC),$(B)/libconclave.a)
LIBSIM       := $(if $(SIM_SRC),$(B)/libsim.a)
BIN_CONCLAVE := $(if $(wildcard src/main.c),$(B)/conclave)
BIN_SIM      := $(if $(wildcard sim/main.c),$(B)/conclave-sim)
TESTS        := $(patsubst tests/unit/%.c,$(B)/tests/%,$(TEST_SRC))
FUZZERS      := $(patsubst tests/fuzz/%.c,$(B)/%,$(FUZZ_SRC))

ALL_SRC := $(LIB_SRC) $(SIM_SRC) $(TEST_SRC) $(wildcard src/main.c sim/main.c)

# ---- build rules ------------------------------------------------------------------------
.PHONY: all sim-bin fuzz-bins FORCE
all: $(LIBCONCLAVE) $(BIN_CONCLAVE) $(LIBSIM) $(BIN_SIM) $(TESTS)
sim-bin: $(BIN_SIM)
fuzz-bins: $(FUZZERS)

FLAGS_LINE := $(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) | $(ALL_LDFLAGS) $(ALL_LDLIBS)
$(B)/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(FLAGS_LINE)' | cmp -s - $@ || echo '$(FLAGS_LINE)' > $@

$(B)/obj/%.o: %.c $(B)/.flags
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libconclave.a: $(call obj,$(LIB_SRC))
	$(call say,AR,$@)rm -f $@ && $(AR) rcs $@ $^

$(B)/libsim.a: $(call obj,$(SIM_SRC))
	$(call say,AR,$@)rm -f $@ && $(AR) rcs $@ $^

# ---- the C client library (include/conclave/client.h, docs/client.md) -------------------
# Its objects are in libconclave.a too (every src/**/*.c is); this archive is the one
# programs link: src/client/ and the HTTP exchange it uses (src/cli/client.c), no server.
CLIENT_SRC := $(sort $(wildcard src/client/*.c)) $(wildcard src/cli/client.c)
LIBCLIENT  := $(if $(wildcard src/client/*.c),$(B)/libconclave-client.a)
PREFIX     ?= /usr/local
DESTDIR    ?=
PC_VERSION := $(shell sed -n 's/^\#define CONCLAVE_VERSION "\(.*\)"/\1/p' src/main.c 2>/dev/null)

all: $(LIBCLIENT) $(if $(LIBCLIENT),$(B)/conclave.pc)

$(B)/libconclave-client.a: $(call obj,$(CLIENT_SRC))
	$(call say,AR,$@)rm -f $@ && $(AR) rcs $@ $^

# Rewritten only when its text (PREFIX, version) changes.
PC_LINES = 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${exec_prefix}/lib' \
    'includedir=$${prefix}/include' '' 'Name: conclave' \
    'Description: C client for Conclave: keys, leases, and locks with a watchdog' \
    'Version: $(or $(PC_VERSION),0.0.0)' 'Cflags: -I$${includedir}' \
    'Libs: -L$${libdir} -lconclave-client -ljansson -lhttp_parser -pthread'
$(B)/conclave.pc: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' $(PC_LINES) | cmp -s - $@ || \
	    { printf '  %-6s %s\n' GEN $@; printf '%s\n' $(PC_LINES) > $@; }

.PHONY: install
install: $(LIBCLIENT) $(B)/conclave.pc $(BIN_CONCLAVE)
	install -d $(DESTDIR)$(PREFIX)/include/conclave $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/conclave/*.h $(DESTDIR)$(PREFIX)/include/conclave/
	install -m 644 $(LIBCLIENT) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(B)/conclave.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	$(if $(BIN_CONCLAVE),install -m 755 $(BIN_CONCLAVE) $(DESTDIR)$(PREFIX)/bin/)

link = $(call say,LINK,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter %.o %.a,$^) $(1) $(ALL_LDLIBS)

$(B)/conclave: $(call obj,src/main.c) $(LIBCONCLAVE)
	$(call link)

$(B)/conclave-sim: $(call obj,sim/main.c) $(LIBSIM) $(LIBCONCLAVE)
	$(call link)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(LIBSIM) $(LIBCONCLAVE)
	@mkdir -p $(@D)
	$(call link,-lcmocka)

$(B)/fuzz_%: $(B)/obj/tests/fuzz/fuzz_%.o $(LIBCONCLAVE)
	$(call link)

-include $(patsubst %.o,%.d,$(call obj,$(ALL_SRC) $(FUZZ_SRC)))

# ---- flavours ---------------------------------------------------------------------------
MUTANT_BUILDS := $(addprefix mutant-,$(MUTANTS))
.PHONY: asan $(MUTANT_BUILDS)

asan:
	$(MAKE) B=build/asan SAN=asan all

# Each mutant rebuilds everything with -DRAFT_MUTANT_<NAME> in build/mutants/<NAME>/; a
# name SIM_<X> is -DSIM_MUTANT_<X> instead (the simulator's own copy of node.c's lease
# driving, sim/lockhost.c).
mutant_flag = $(if $(filter SIM_%,$(1)),-DSIM_MUTANT_$(patsubst SIM_%,%,$(1)),-DRAFT_MUTANT_$(1))
$(MUTANT_BUILDS): mutant-%:
	$(MAKE) B=build/mutants/$* SAN= EXTRA_CFLAGS='$(EXTRA_CFLAGS) $(call mutant_flag,$*)' sim-bin

# ---- run / test / bench -----------------------------------------------------------------
.PHONY: run test bench soak sim-mutants fuzz

run:
	@scripts/deps.sh
	$(MAKE) all
	$(B)/conclave serve

test:
	@scripts/deps.sh
	$(MAKE) B=build/asan SAN=asan all
	@scripts/run-tests.sh build/asan

bench: all $(B)/bench/physlimits $(B)/bench/wal_bench $(B)/bench/kv_lookup_bench
	@scripts/deps.sh
	@scripts/bench.sh $(B)

# bench/physlimits.c: fdatasync and loopback round-trip floors for bench/kv_bench.py.
$(B)/bench/physlimits: bench/physlimits.c $(B)/.flags
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

# bench/wal_bench.c: the WAL against the bare fdatasync rate (issue #3, docs/bench.md).
$(B)/bench/wal_bench: $(call obj,bench/wal_bench.c) $(LIBCONCLAVE)
	@mkdir -p $(@D)
	$(call link)
-include $(B)/obj/bench/wal_bench.d

# bench/kv_lookup_bench.c: exact-key lookups in the MVCC store (hash index; docs/kv.md).
$(B)/bench/kv_lookup_bench: $(call obj,bench/kv_lookup_bench.c) $(LIBCONCLAVE)
	@mkdir -p $(@D)
	$(call link)
-include $(B)/obj/bench/kv_lookup_bench.d

need_sim = @test -x $(B)/conclave-sim || { echo "$@: $(B)/conclave-sim is not built (no sim/main.c yet)" >&2; exit 1; }

soak: all
	$(need_sim)
	$(B)/conclave-sim --soak-minutes $(MINUTES) --jobs 2
	@# ids: issue #7's 10M ids from 3 nodes with kill -9 + restarts (make test runs 300k, 1 kill)
	ID_SOAK_COUNT=$(or $(ID_SOAK_COUNT),10000000) ID_SOAK_KILLS=$(or $(ID_SOAK_KILLS),6) \
	    CONCLAVE_BIN=$(B)/conclave /usr/bin/python3 -m pytest -q -s \
	    tests/integration/test_id_10m.py

# Jepsen-style chaos run of $(B)/conclave (tests/chaos/README.md); exits 1 on an anomaly.
# WORKLOAD=register|lock|ids|watch  NEMESIS=none|kill|pause|partition|slow-disk|clock-jump|mixed
# RATE=N caps the clients at N ops/s in all (default: as fast as they go).
WORKLOAD ?= register
NEMESIS  ?= mixed
NODES    ?= 3
.PHONY: chaos
chaos: all
	@scripts/deps.sh
	CONCLAVE_BIN=$(B)/conclave /usr/bin/python3 tests/chaos/harness.py --minutes $(MINUTES) \
	    --workload $(WORKLOAD) --nemesis $(NEMESIS) --nodes $(NODES) --out build/chaos \
	    $(if $(RATE),--rate $(RATE))

sim-mutants: $(MUTANT_BUILDS)
	@scripts/sim-mutants.sh $(MUTANTS)

fuzz:
ifeq ($(FUZZ_SRC),)
	@echo "fuzz: no fuzz targets yet (add tests/fuzz/fuzz_<name>.c, see tests/fuzz/README.md)"
else
	$(MAKE) B=build/fuzz SAN=fuzz CC=clang fuzz-bins
	@set -e; for f in $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC)); do \
	    n=$${f##*/}; mkdir -p build/fuzz/corpus/$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus/$$n \
	        $$(test -d tests/fuzz/corpus/$$n && echo tests/fuzz/corpus/$$n); \
	done
endif

# ---- hygiene ----------------------------------------------------------------------------
.PHONY: fmt lint clean

FMT_FILES  = $(sort $(shell find src sim tests include -name '*.[ch]' 2>/dev/null))
LINT_FILES = $(sort $(shell find src sim -name '*.c' 2>/dev/null))

fmt:
	$(if $(FMT_FILES),clang-format -i $(FMT_FILES),@echo "fmt: no files")

lint:
	cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr -q \
	    --std=c11 -Isrc -Isim -Iinclude -D_POSIX_C_SOURCE=200809L $(wildcard src sim)
	@if [ -f .clang-tidy ] && [ -n "$(LINT_FILES)" ]; then \
	    echo "clang-tidy $(words $(LINT_FILES)) files"; \
	    set -o pipefail; clang-tidy --quiet $(LINT_FILES) -- -std=c17 $(ALL_CPPFLAGS) 2>&1 \
	        | sed '/^[0-9]* warnings\{0,1\} generated\.$$/d'; \
	fi

clean:
	rm -rf build
