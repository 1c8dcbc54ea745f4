# ropekit: make | make test | make asan | make bench | make install PREFIX=... | make clean
# GNU make. Objects go to $(BUILD) (out of tree). Missing Debian packages are installed first
# (scripts/ensure-deps.sh: apt-get as root or via sudo, else it stops with the exact apt line).

BUILD   ?= build
OPT     ?= -O2 -g
SAN     ?=
PREFIX  ?= /usr/local
# A test binary may add arguments (cmocka group filter etc.) through this.
TEST_ENV ?=
# Python: Debian's interpreter (python3-numpy, python3-pytest are installed for it), never
# whatever python3 comes first on PATH. PY_TEST_ENV: prefix of the pytest command (make asan).
PYTHON  ?= /usr/bin/python3
PY_TEST_ENV ?=

# ---- dependencies: checked (and installed if missing) before anything else is read ----------
NODEPS_GOALS := clean help
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
ifndef RK_DEPS_DONE
DEPS_STATUS := $(shell sh scripts/ensure-deps.sh 1>&2 && echo ok)
ifneq ($(DEPS_STATUS),ok)
$(error missing dependencies (see the message above))
endif
export RK_DEPS_DONE := 1
endif
endif

LIB_PKGS  := fftw3 fftw3f gsl openblas jansson
TEST_PKGS := cmocka

WARN     := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wvla -Wformat=2 -Wno-format-nonliteral
# -std=c11 (not gnu11) keeps GCC from contracting a*b+c into FMA: the same bits on every build.
CPPFLAGS += -Ilib -D_POSIX_C_SOURCE=200809L -MMD -MP
PKG_CFLAGS := $(shell pkg-config --cflags $(LIB_PKGS) 2>/dev/null)
# GSL's pkg-config adds its own -lgslcblas: drop it so OpenBLAS is the one CBLAS linked.
PKG_LIBS   := $(filter-out -lgslcblas,$(shell pkg-config --libs $(LIB_PKGS) 2>/dev/null))
TEST_LIBS  := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
CFLAGS   += -std=c11 $(OPT) $(WARN) $(SAN) -fopenmp -fPIC $(PKG_CFLAGS)
LDFLAGS  += $(SAN) -fopenmp
LDLIBS   += $(PKG_LIBS) -lm

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB_A    := $(BUILD)/libropekit.a
# The shared library: real file libropekit.so.$(SOVERSION).<minor>.<patch>, soname
# libropekit.so.$(SOVERSION), development link libropekit.so. Only the public rk_ API is exported
# (lib/ objects are built with -fvisibility=hidden; ropekit.h marks its declarations default).
SOVERSION := 0
RK_VER   := $(shell sed -n 's/^\#define RK_VERSION "\(.*\)"/\1/p' lib/ropekit.h)
LIB_SONAME := libropekit.so.$(SOVERSION)
LIB_SO   := $(BUILD)/libropekit.so
LIB_SO_REAL := $(BUILD)/libropekit.so.$(RK_VER)
# The language model (model/): its own archive, linked by the command line and the tests.
MODEL_OBJ:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard model/*.c))
MODEL_A  := $(BUILD)/libropekit-lm.a
CLI      := $(BUILD)/ropekit
CLI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard experiments/*.c))
# Everything of the command line but its main(): tests link it to test drivers' internals.
EXP_OBJ  := $(filter-out $(BUILD)/experiments/ropekit.o,$(CLI_OBJ))
EXP_A    := $(BUILD)/libropekit-drivers.a
BENCH    := $(BUILD)/ropekit-bench
BENCH_OBJ:= $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/*.c))
TEST_BIN := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/test_*.c))
# ropekit-mpi (issue 18): the MPI programs (mpi/), built with Open MPI's compile and link flags
# (mpicc --showme); the library and the plain ropekit never see MPI.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
MPI_BIN  := $(BUILD)/ropekit-mpi
MPI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard mpi/*.c))
TEST_AUX := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tests/test_%,$(wildcard tests/*.c)))

.PHONY: all test asan bench install clean help plots-% paper paper-check paper-figures fuzz valgrind
.SECONDARY:
.DELETE_ON_ERROR:

all: $(LIB_A) $(LIB_SO) $(CLI) $(MPI_BIN)

help:
	@echo "make           build $(LIB_A), $(LIB_SO), $(CLI), $(MPI_BIN)"
	@echo "make test      build and run the cmocka suite and the Python tests (pytest)"
	@echo "make asan      the suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make bench     benchmarks (figures, not pass/fail)"
	@echo "make paper     every check, experiment and figure, and out/paper/REPORT.md (FULL=1, FORCE=1)"
	@echo "make paper-check  a reduced make paper end to end (CI)"
	@echo "make plots-NAME  one experiment's figures (decay, scaling, approx, pattern) into out/NAME"
	@echo "make fuzz      libFuzzer on the .npy reader and the command line (FUZZ_SECONDS=60)"
	@echo "make valgrind  the test suite under valgrind memcheck"
	@echo "make install PREFIX=/usr/local  (also the Python package, into PYTHON_SITE)"

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(LIB_SO_REAL): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(LIB_SONAME) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(LIB_SO): $(LIB_SO_REAL)
	ln -sf $(notdir $(LIB_SO_REAL)) $(BUILD)/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $@
# Library objects export nothing but the public API (ropekit.h pushes default visibility).
$(LIB_OBJ): CFLAGS += -fvisibility=hidden
$(MODEL_A): $(MODEL_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(CLI): $(CLI_OBJ) $(MODEL_A) $(LIB_A)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(MPI_OBJ): CPPFLAGS += -Iexperiments
$(MPI_OBJ): CFLAGS += $(MPI_CFLAGS)
$(MPI_BIN): $(MPI_OBJ) $(EXP_A) $(MODEL_A) $(LIB_A)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(MPI_LIBS) -o $@
$(BENCH): $(BENCH_OBJ) $(LIB_A)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(EXP_A): $(EXP_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
# Tests of the drivers' internals (theory checks, statistics, resume) link the driver archive.
DRIVER_TESTS := $(filter-out test_cli,$(patsubst tests/%.c,%,$(wildcard tests/test_drv_*.c)))
$(addprefix $(BUILD)/tests/,$(DRIVER_TESTS)): $(EXP_A)
# Tests of the language model (test_lm*, test_train*) link the model and driver archives.
LM_TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_lm*.c tests/test_train*.c))
$(addprefix $(BUILD)/tests/,$(LM_TESTS)): $(EXP_A) $(MODEL_A)
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_AUX) $(LIB_A)
	$(CC) $(LDFLAGS) $(filter %.o,$^) $(filter $(EXP_A),$^) $(filter $(MODEL_A),$^) $(LIB_A) \
	  $(TEST_LIBS) $(LDLIBS) -o $@
# The run header of the experiments names the build flags.
$(BUILD)/experiments/machine.o: CPPFLAGS += -DRK_BUILD_FLAGS='"$(strip $(OPT) $(SAN))"'
# Tests that drive the command line find it here.
$(BUILD)/tests/%.o: CPPFLAGS += -DRK_CLI_PATH='"$(abspath $(CLI))"' -DRK_TESTS_DIR='"$(abspath tests)"'
$(TEST_BIN): | $(CLI) $(MPI_BIN)
$(BUILD)/tests/%.o: CPPFLAGS += -DRK_MPI_PATH='"$(abspath $(MPI_BIN))"' \
  -DRK_MPIRUN='"$(shell command -v mpirun 2>/dev/null)"'

# Runs every test binary (each a cmocka group), the install check (not under sanitizers), then
# the Python package's tests (pytest under $(PYTHON), against this build's library and command
# line), then one closing line with the totals.
test: $(TEST_BIN) $(CLI) $(LIB_SO)
	@mkdir -p $(BUILD)/log; fail=0; \
	for t in $(TEST_BIN); do \
	  echo "== $$t"; \
	  $(TEST_ENV) $$t > $(BUILD)/log/$$(basename $$t).log 2>&1; rc=$$?; \
	  cat $(BUILD)/log/$$(basename $$t).log; \
	  [ $$rc -eq 0 ] || { echo "!! $$t exited $$rc"; fail=1; }; \
	done; \
	if [ -z "$(SAN)" ]; then \
	  echo "== tests/install_check.sh"; \
	  MAKE="$(MAKE)" sh tests/install_check.sh $(BUILD) || { echo "!! install check failed"; fail=1; }; \
	fi; \
	echo "== python/tests ($(PYTHON) -m pytest)"; \
	$(PY_TEST_ENV) ROPEKIT_LIBRARY=$(abspath $(LIB_SO)) ROPEKIT_CLI=$(abspath $(CLI)) \
	  ROPEKIT_BUILD=$(abspath $(BUILD)) PYTHONDONTWRITEBYTECODE=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -rs python/tests > $(BUILD)/log/pytest.out 2>&1; \
	rc=$$?; cat $(BUILD)/log/pytest.out; \
	[ $$rc -eq 0 ] || { echo "!! pytest exited $$rc"; fail=1; }; \
	{ cat $(BUILD)/log/*.log; tail -n 1 $(BUILD)/log/pytest.out; } | \
	  awk '/^\[  PASSED  \]/ {p += $$4} /^\[  FAILED  \] [0-9]+ test/ {f += $$4} \
	  / in [0-9.]+s/ {for (i = 2; i <= NF; i++) { if ($$i ~ /^passed/) p += $$(i-1); \
	    if ($$i ~ /^(failed|errors?)/) f += $$(i-1); if ($$i ~ /^skipped/) s += $$(i-1); \
	    if ($$i ~ /^xfailed/) x += $$(i-1) } } \
	  END {printf "tests: %d passed, %d failed, %d skipped, %d known failures\n", p, f, s, x}'; \
	exit $$fail

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  TEST_ENV="ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1" \
	  PY_TEST_ENV="LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1" test

bench: $(BENCH)
	$(BENCH)

# Figures: each plots/<name>.sh runs its ropekit command(s) and gnuplot into out/<name>/.
# Each script reads ROPEKIT and OUTDIR; extra arguments go in PLOT_ARGS (e.g. PLOT_ARGS=--quick).
plots-%: $(CLI)
	ROPEKIT=$(abspath $(CLI)) OUTDIR=out/$* sh plots/$*.sh $(PLOT_ARGS)

# Robustness: libFuzzer targets (.npy reader, every subcommand's command line) for FUZZ_SECONDS
# each, replaying kept findings first; the whole suite under valgrind memcheck.
fuzz:
	sh scripts/fuzz.sh
valgrind: $(TEST_BIN) $(CLI)
	sh scripts/valgrind.sh

# The paper: every theory check, experiment and figure, and one report (scripts/paper.sh) in
# $(PAPER_OUT)/REPORT.md and index.html. FULL=1: the thorough settings; FORCE=1: rerun the steps
# that finished before (they are skipped otherwise). paper-check: a reduced run end to end into
# $(BUILD)/paper-check, then scripts/paper_check.sh (every file there, no FAIL verdict).
# paper-figures: copy the README's figures from $(PAPER_OUT) (run make paper first).
PAPER_OUT ?= out/paper
PAPER_FIGURES := decay/fig2.png:fig2.png scaling/time.png:scaling-time.png \
                 approx/error_m.png:approx-error-m.png
paper: $(CLI)
	@ROPEKIT=$(abspath $(CLI)) PAPER_OUT='$(PAPER_OUT)' FULL='$(FULL)' FORCE='$(FORCE)' PAPER_SMOKE= \
	  sh scripts/paper.sh
paper-check: $(CLI)
	@ROPEKIT=$(abspath $(CLI)) PAPER_OUT=$(BUILD)/paper-check FULL= FORCE=1 PAPER_SMOKE=1 \
	  sh scripts/paper.sh
	@sh scripts/paper_check.sh $(BUILD)/paper-check
paper-figures:
	@mkdir -p docs/figures; for p in $(PAPER_FIGURES); do \
	  src='$(PAPER_OUT)'/$${p%%:*}; dst=docs/figures/$${p#*:}; \
	  [ -s "$$src" ] || { echo "paper-figures: no $$src (run make paper first)" >&2; exit 1; }; \
	  cp "$$src" "$$dst"; size=$$(wc -c < "$$dst"); echo "$$dst: $$size bytes"; \
	  [ $$size -le 153600 ] || echo "paper-figures: warning: $$dst is over 150 KB" >&2; \
	done

# The .pc file names PREFIX, so it is written at install time, never reused from a build.
.PHONY: $(BUILD)/ropekit.pc
$(BUILD)/ropekit.pc:
	@mkdir -p $(@D)
	@printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: ropekit\nDescription: RoPE and attention kernels (softmax, FAVOR+, linear)\nVersion: %s\nRequires.private: $(LIB_PKGS)\nCflags: -I$${includedir}\nLibs: -L$${libdir} -Wl,-rpath,$${libdir} -lropekit\nLibs.private: -fopenmp -lm\n' \
	  '$(PREFIX)' '$(RK_VER)' > $@

# The Python package beside the library: $(PYTHON_SITE)/ropekit, with _install.py naming the
# library's directory (without DESTDIR). Debian's python3 reads /usr/local/lib/python3.X/
# dist-packages, so PREFIX=/usr/local needs no PYTHONPATH.
PY_VER      = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHON_SITE ?= $(PREFIX)/lib/python$(PY_VER)/dist-packages
PY_SRC      := $(filter-out python/ropekit/_install.py,$(wildcard python/ropekit/*.py))

install: all $(BUILD)/ropekit.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 lib/ropekit.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO_REAL) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(notdir $(LIB_SO_REAL)) $(DESTDIR)$(PREFIX)/lib/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $(DESTDIR)$(PREFIX)/lib/libropekit.so
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/ropekit.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -d $(DESTDIR)$(PYTHON_SITE)/ropekit
	install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHON_SITE)/ropekit/
	$(PYTHON) -c 'import sys; print("\"\"\"Written by make install: the directory of libropekit.\"\"\"\nLIBDIR = %r" % sys.argv[1])' \
	  '$(PREFIX)/lib' > $(DESTDIR)$(PYTHON_SITE)/ropekit/_install.py

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(MODEL_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(MPI_OBJ:.o=.d) $(BENCH_OBJ:.o=.d) $(TEST_AUX:.o=.d) $(TEST_BIN:=.d)
