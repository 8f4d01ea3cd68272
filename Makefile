# hotsnap - the thin layer over Meson that the README promises:
#   make         build into build/ (the CLI at build/hotsnap)
#   make demo    the main job end to end, on a scratch volume it sets up
#   make check   every test (unit, ASan+UBSan, system); SANITIZE=1 runs the
#                system tests on a sanitized build too
#   make bench   the benchmarks and the side-by-side comparison with the peer
#   make stress  the long variants of the reliability tests (kills, churn,
#                randomized engine models)
#   make fuzz    build the libFuzzer targets (clang)
#   make deb     the Debian package (build-deb/hotsnap_*.deb), lintian-clean
#   make install the binary, systemd unit, config, hooks, man page and
#                completion under PREFIX (default /usr/local), into DESTDIR
# Each target installs the Debian packages it needs first.

BUILD ?= build
SANITIZE ?= 0

.PHONY: all build demo check bench fuzz stress clean install deb

PREFIX ?= /usr/local
DESTDIR ?=

all: build

build:
	@scripts/deps.sh build
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD)

demo: build
	@scripts/deps.sh test
	@scripts/demo.sh

check:
	@scripts/deps.sh build test deb
	@SANITIZE=$(SANITIZE) scripts/check.sh

bench: build
	@scripts/deps.sh test bench
	@bench/run.sh

stress: build
	@scripts/deps.sh test
	@scripts/stress.sh

fuzz:
	@scripts/deps.sh build fuzz
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dsystem_tests=false >/dev/null
	@ninja -C build-fuzz

# Its own build dir: the prefix is baked into the unit file.
install:
	@scripts/deps.sh build
	@[ -f build-install/build.ninja ] || meson setup build-install --prefix=$(PREFIX) -Dsystem_tests=false >/dev/null
	@meson configure build-install --prefix=$(PREFIX) >/dev/null
	@ninja -C build-install hotsnap
	@DESTDIR=$(DESTDIR) meson install -C build-install --no-rebuild --quiet

deb:
	@scripts/deps.sh build deb
	@scripts/deb.sh

clean:
	rm -rf build build-asan build-san build-fuzz build-install build-deb
