# h2tdb build. Outputs under build/ (release) and build/asan/ (tests, sanitizers).
#   make            build/h2tdb
#   make test       build with ASan+UBSan and run every test (T=pattern runs a subset)
#   make bench      benchmarks against named peers (needs deploy/deps.sh --bench)
#   make demo       the main job end to end on real data (docs/deployment.md)
#   make eval       the evaluation suite, a subset of its tasks (docs/eval.md); eval-full: all
#   make conformance  the executor against ONNX Runtime and tfjs, and the model zoo (ZOO=...)
#   make conformance-classify  the exported ONNX classifier under ONNX Runtime against predict:
#                   every method, the test fixtures (a CNN, a ViT) then the demo's MobileNetV2
#   make format-check | format | clean | install (PREFIX, DESTDIR)
#   make slurm-check  both deploy/slurm scripts under a one-machine Slurm (deps.sh --slurm)
#   make fuzz       each libFuzzer target for 60 s (frame, onnx, data, sel, store; tests/fuzz/run.sh)
#   make fuzz-long  each for an hour
#   make soak       SIGKILL soaks of an extraction and a server, a full disk (tests/soak/run.sh)

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
ONNX_PROTO ?= /usr/include/onnx/onnx.proto

WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-format-truncation -Wno-error=deprecated-declarations
# MPI is optional: found through OpenMPI's `mpicc --showme`, else pkg-config (ompi-c, mpich);
# `make MPI=0` builds without it (then `--mpi` fails with "built without MPI"). common/mpi.c
# is the only file that includes <mpi.h> or tests H2T_HAVE_MPI (only it gets these flags);
# build/mpi.flags makes it rebuild when they change.
MPI ?= auto
ifneq ($(MPI),0)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null || pkg-config --cflags mpich 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null || pkg-config --libs mpich 2>/dev/null)
endif
ifneq ($(strip $(MPI_LIBS)),)
MPI_DEF := -DH2T_HAVE_MPI=1 $(MPI_CFLAGS)
else ifeq ($(MPI),1)
$(error MPI=1 but neither mpicc nor pkg-config ompi-c/mpich was found (deploy/deps.sh installs OpenMPI))
endif

BASE_CFLAGS := $(WARN) -D_GNU_SOURCE -g -I. -Ibuild/gen -pthread
REL_CFLAGS := $(BASE_CFLAGS) -O2
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
LIBS := -llmdb -lopenblas -lprotobuf-c -luv -lz -lpng -ljpeg -lm -pthread $(MPI_LIBS)

MODULES := common proto storage extract solver classify server client cli
LIB_SRCS := $(filter-out cli/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
PROTOS := $(wildcard proto/*.proto)
GEN_SRCS := $(patsubst proto/%.proto,build/gen/proto/%.pb-c.c,$(PROTOS)) build/gen/onnx/onnx.pb-c.c
GEN_HDRS := $(GEN_SRCS:.c=.h)
TEST_SRCS := $(wildcard tests/*.c)

REL_OBJS := $(patsubst %.c,build/obj/%.o,$(LIB_SRCS) $(GEN_SRCS))
ASAN_OBJS := $(patsubst %.c,build/asan/obj/%.o,$(LIB_SRCS) $(GEN_SRCS))
TEST_OBJS := $(patsubst %.c,build/asan/obj/%.o,$(TEST_SRCS))

.PHONY: all test bench demo eval eval-full format format-check clean install fuzz fuzz-long soak tests-bin deps slurm-check
.DELETE_ON_ERROR:

all: build/h2tdb

# ---- generated protobuf-c code (never committed) ----
# kept: as a pattern rule's side product the header is otherwise deleted after the first build,
# and the next make regenerates it and rebuilds everything that includes it
.SECONDARY: $(GEN_SRCS) $(GEN_HDRS)
build/gen/proto/%.pb-c.c build/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p build/gen/proto
	protoc-c --proto_path=proto --c_out=build/gen/proto $<

build/gen/onnx/onnx.pb-c.c build/gen/onnx/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p build/gen/onnx
	protoc-c --proto_path=$(dir $(ONNX_PROTO)) --c_out=build/gen/onnx $(ONNX_PROTO)

# generated code is not held to our warning flags
GEN_CFLAGS_FILTER = $(filter-out -Werror -Wmissing-prototypes -Wstrict-prototypes,$(1))

build/obj/build/gen/%.o: build/gen/%.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(call GEN_CFLAGS_FILTER,$(REL_CFLAGS)) -c $< -o $@
build/asan/obj/build/gen/%.o: build/gen/%.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(call GEN_CFLAGS_FILTER,$(ASAN_CFLAGS)) -c $< -o $@

MPI_STAMP := $(strip $(MPI_CFLAGS) | $(MPI_LIBS))
build/mpi.flags: FORCE
	@mkdir -p build
	@[ "$$(cat $@ 2>/dev/null)" = '$(MPI_STAMP)' ] || echo '$(MPI_STAMP)' >$@
build/obj/common/mpi.o build/asan/obj/common/mpi.o: build/mpi.flags
build/obj/common/mpi.o: REL_CFLAGS += $(MPI_DEF)
build/asan/obj/common/mpi.o: ASAN_CFLAGS += $(MPI_DEF)
.PHONY: FORCE
FORCE:

build/obj/%.o: %.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -MMD -MP -c $< -o $@
build/asan/obj/%.o: %.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

build/libh2tdb.a: $(REL_OBJS)
	@rm -f $@
	ar rcs $@ $^
build/asan/libh2tdb.a: $(ASAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/h2tdb: build/obj/cli/main.o build/libh2tdb.a
	$(CC) $(REL_CFLAGS) $^ $(LIBS) -o $@
build/asan/h2tdb: build/asan/obj/cli/main.o build/asan/libh2tdb.a
	$(CC) $(ASAN_CFLAGS) $^ $(LIBS) -o $@
build/asan/h2tdb-tests: $(TEST_OBJS) build/asan/libh2tdb.a
	$(CC) $(ASAN_CFLAGS) $^ $(LIBS) -o $@

# make test / demo / bench install what they need first (quiet and fast when all is there)
deps:
	@./deploy/deps.sh

tests-bin: build/asan/h2tdb-tests build/asan/h2tdb build/h2tdb

# Tests run the sanitized binaries; the CLI under test is $H2T_BIN.
test: deps
	@$(MAKE) --no-print-directory tests-bin
	H2T_SRCDIR=$(CURDIR) H2T_BIN=$(CURDIR)/build/asan/h2tdb \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	OPENBLAS_NUM_THREADS=1 ./build/asan/h2tdb-tests $(T)

# ---- benchmarks (release build) ----
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,build/bench/%,$(BENCH_SRCS))
build/bench/%: bench/%.c build/libh2tdb.a
	@mkdir -p build/bench
	$(CC) $(REL_CFLAGS) $< build/libh2tdb.a $(LIBS) -o $@
bench: build/h2tdb $(BENCH_BINS)
	./bench/run.sh

demo: 
	./deploy/demo.sh

eval:
	./deploy/eval.sh
eval-full:
	EVAL=full ./deploy/eval.sh

FMT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FMT_SRCS)
format-check:
	@clang-format --dry-run --Werror $(FMT_SRCS) && echo "format-check: ok"

# The installed headers are the module contracts; each includes only others of this set and
# the C library (tests/install_check.sh compiles and links a program against them).
PUB_HDRS := $(wildcard common/*.h) storage/store.h extract/extract.h extract/model.h \
            solver/solver.h client/client.h proto/proto.h
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
H2T_VERSION := $(shell sed -n 's/^#define H2T_VERSION "\(.*\)"/\1/p' cli/cmd_version.c)
install: build/h2tdb build/libh2tdb.a
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 build/h2tdb $(DESTDIR)$(BINDIR)/h2tdb
	install -m 0644 build/libh2tdb.a $(DESTDIR)$(LIBDIR)/libh2tdb.a
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)/h2tdb' '' \
	  'Name: h2tdb' 'Description: feature-cache database and Head2Toe heads (static library)' \
	  'Version: $(H2T_VERSION)' 'Cflags: -I$${includedir} -pthread' \
	  'Libs: -L$${libdir} -lh2tdb $(LIBS)' >$(DESTDIR)$(LIBDIR)/pkgconfig/h2tdb.pc
	chmod 0644 $(DESTDIR)$(LIBDIR)/pkgconfig/h2tdb.pc
	for h in $(PUB_HDRS); do \
	  install -d $(DESTDIR)$(INCLUDEDIR)/h2tdb/$$(dirname $$h) && \
	  install -m 0644 $$h $(DESTDIR)$(INCLUDEDIR)/h2tdb/$$h || exit 1; done

# a one-machine Slurm cluster in a temporary folder runs both batch scripts (root; not in CI)
slurm-check: build/h2tdb
	./deploy/slurm/check.sh

fuzz:
	./tests/fuzz/run.sh 60 frame onnx data sel store
fuzz-long:
	./tests/fuzz/run.sh 3600 frame onnx data sel store

# ---- soak (not part of make test; docs/robustness.md): KILLS=100 SEED=1 by default ----
build/soak/storehash: tests/soak/storehash.c build/libh2tdb.a
	@mkdir -p build/soak
	$(CC) $(REL_CFLAGS) $< build/libh2tdb.a $(LIBS) -o $@
soak: build/h2tdb build/soak/storehash
	./tests/soak/run.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- conformance against ONNX Runtime (tests/conformance/; needs nodejs + npm) ----
build/conformance/onnx_dump: tests/conformance/onnx_dump.c build/libh2tdb.a
	@mkdir -p build/conformance
	$(CC) $(REL_CFLAGS) $< build/libh2tdb.a $(LIBS) -o $@
# The zoo (deploy/export_zoo.py): ZOO="vit_b_16 swin_t" for a subset; conformance-zoo runs
# only that part. The table lists every model, PASS/FAIL or why h2tdb cannot run it yet.
ZOO ?=
build/conformance/classify_input: tests/conformance/classify_input.c build/libh2tdb.a
	@mkdir -p build/conformance
	$(CC) $(REL_CFLAGS) $< build/libh2tdb.a $(LIBS) -o $@
conformance: build/conformance/onnx_dump build/conformance/classify_input
	./deploy/deps.sh --bench
	./deploy/fetch_model.sh --all
	./tests/conformance/selftest.sh
	./tests/conformance/tfjs_compare.sh
	./tests/conformance/ort_compare.sh mobilenet_v2 resnet18 resnet50
	./tests/conformance/ort_compare.sh --outputs mobilenet_v2 resnet18 resnet50
	./tests/conformance/ort_compare.sh --blocked mobilenet_v2 resnet18 resnet50
	./tests/conformance/classify_ort_tiny.sh
	./tests/conformance/classify_ort.sh
	@$(MAKE) --no-print-directory conformance-zoo
# The exported classifier alone (docs/classify.md): seconds on the fixtures, then the demo's
# protocol (minutes: the extraction is kept in build/conformance/classify for the next run).
conformance-classify: build/conformance/classify_input
	./deploy/fetch_model.sh --ort
	./tests/conformance/classify_ort_tiny.sh
	./tests/conformance/classify_ort.sh
conformance-zoo: build/conformance/onnx_dump
	./deploy/deps.sh --bench
	./deploy/fetch_model.sh --ort
	/usr/bin/python3 deploy/export_zoo.py $(ZOO)
	./tests/conformance/ort_compare.sh --layers --table $(if $(ZOO),$(addprefix zoo:,$(ZOO)),zoo)
	./tests/conformance/ort_compare.sh --outputs --table $(if $(ZOO),$(addprefix zoo:,$(ZOO)),zoo)
.PHONY: conformance conformance-zoo conformance-classify
