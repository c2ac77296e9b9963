# kindling — the README's contract: `make run` and `make test` on a fresh Debian 12 machine.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
export KINDLING_CACHE ?= $(HOME)/.cache/kindling

# Debian packages the build, the tests, the guests and the benchmarks need.
DEB_PACKAGES := cmake g++ make libaio-dev libcli11-dev nlohmann-json3-dev googletest libgtest-dev \
  busybox-static e2fsprogs cpio linux-source-6.1 bc bison flex libelf-dev libssl-dev xz-utils lz4 \
  fio clang-format acpica-tools zlib1g-dev liblzma-dev liblz4-dev libzstd-dev libbz2-dev zstd \
  bzip2 gzip liburing-dev libhttp-parser-dev curl

.PHONY: all build deps test unit integration smoke run bench guest clean format lint fuzz sanitize

all: build

# Installs only what is missing: one dpkg-query lists packages not installed, and names those it
# has never heard of on stderr ("no packages found matching P").
deps:
	@missing=$$(dpkg-query -W -f='$${Package} $${db:Status-Status}\n' $(DEB_PACKAGES) 2>&1 \
	  | awk '/^dpkg-query: no packages found matching/ {print $$NF; next} $$2 != "installed" {print $$1}' \
	  | sort -u); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get) or install:" $$missing; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Guest artifacts: the Linux kernel is cached under $(KINDLING_CACHE), keyed by its inputs.
guest: deps
	guest/make-guest.sh $(BUILD)/guest

test: build guest
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j$(JOBS)

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

smoke: build guest
	cd $(BUILD) && ctest --output-on-failure -L smoke

run: build guest
	@guest/run-default.sh $(BUILD)

bench: build
	tests/bench/run.sh $(BUILD)

# One clang build with ASan + UBSan (and libFuzzer's coverage instrumentation) serves both
# `make sanitize` (the unit and integration suites) and `make fuzz` (each target FUZZ_SECONDS):
# CI compiles it once. C is only the freestanding test guest: it stays with the default compiler
# and no sanitizer (it runs inside the VM, not in the host process).
SAN_BUILD ?= build-san
FUZZ_BUILD ?= $(SAN_BUILD)
FUZZ_SECONDS ?= 30
FUZZ_PACKAGES := clang libclang-rt-14-dev
FUZZ_TARGETS := fuzz_queue fuzz_blk_request fuzz_config_json fuzz_kernel_loader fuzz_assist fuzz_mmio
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# The soak (label soak, minutes under ASan) stays in `make test`.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

$(SAN_BUILD)/CMakeCache.txt:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FUZZ_PACKAGES)"
	CXX=clang++ cmake -S . -B $(SAN_BUILD) -DKINDLING_FUZZ=ON -DKINDLING_STATIC=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS="$(SANITIZE_FLAGS) -fsanitize=fuzzer-no-link"

sanitize: deps $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j$(JOBS)
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -L 'unit|integration' -LE soak -j$(JOBS)

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target $(FUZZ_TARGETS)
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

format:
	git ls-files '*.cc' '*.h' '*.c' | xargs clang-format -i

lint:
	git ls-files '*.cc' '*.h' '*.c' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
