#!/usr/bin/env bash
# The one entry point for building, testing and benchmarking Kaban on Debian 12.
# Run `packaging/dev.sh help` for the commands.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian 12 packages the build and the tests need. Nothing else is downloaded.
BUILD_DEPS=(cmake make g++ ccache pkg-config libboost-dev libssl-dev libsqlite3-dev
  libsqlitecpp-dev nlohmann-json3-dev libgtest-dev libcli11-dev sqlite3)
# Baselines the benchmarks compare against (the test suite runs a short pass of each).
BENCH_DEPS=(libsqlcipher-dev)

usage() {
  cat <<USAGE
Usage: packaging/dev.sh COMMAND [ARGS]

Commands:
  test           install what is missing, build, and run the whole test suite with ctest
  bench NAME     install what is missing, build the benchmarks, and run bench NAME
                 (names: $(list_benches)); extra ARGS go to the benchmark
  build          install what is missing and build (no tests run)
  deps           only install the missing Debian packages
  help           this text

Environment:
  KABAN_BUILD_DIR   build directory (default: build/, or build-sanitize/ with KABAN_SANITIZE)
  KABAN_SANITIZE    sanitizers to build with, e.g. address,undefined
  KABAN_TEST_LABEL  run only tests with this ctest label (unit, integration, bench)
  KABAN_JOBS        parallel build and test jobs (default: number of cores)

Installing needs root (it uses apt-get); as another user, install the packages listed by
the packages named at the top of this script first.
USAGE
}

list_benches() {
  local names=()
  for f in "$ROOT"/bench/*/; do [ -d "$f" ] && names+=("$(basename "$f")"); done
  echo "${names[*]:-none}"
}

log() { printf '==> %s\n' "$*" >&2; }

# Installs the packages not yet installed, running apt-get update first only when needed.
install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "       install them as root (apt-get install ${missing[*]}) and run this again" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

jobs() { echo "${KABAN_JOBS:-$(nproc)}"; }

build_dir() {
  if [ -n "${KABAN_BUILD_DIR:-}" ]; then
    echo "$KABAN_BUILD_DIR"
  elif [ -n "${KABAN_SANITIZE:-}" ]; then
    echo "$ROOT/build-sanitize"
  else
    echo "$ROOT/build"
  fi
}

# configure_and_build [TARGET...]: configures (tests and benchmarks on) and builds the targets,
# or everything.
configure_and_build() {
  local dir targets=()
  dir=$(build_dir)
  for t in "$@"; do targets+=(--target "$t"); done
  log "configuring $dir"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKABAN_SANITIZE="${KABAN_SANITIZE:-}" -DKABAN_BUILD_TESTS=ON -DKABAN_BUILD_BENCH=ON >/dev/null
  log "building ${*:-everything} with $(jobs) jobs"
  cmake --build "$dir" -j "$(jobs)" "${targets[@]}"
}

cmd_test() {
  install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}"
  configure_and_build
  local label=()
  [ -n "${KABAN_TEST_LABEL:-}" ] && label=(-L "$KABAN_TEST_LABEL")
  log "running tests"
  ctest --test-dir "$(build_dir)" --output-on-failure -j "$(jobs)" "${label[@]}"
}

cmd_bench() {
  local name=${1:-}
  if [ -z "$name" ] || [ ! -d "$ROOT/bench/$name" ]; then
    echo "error: name a benchmark: $(list_benches)" >&2
    exit 2
  fi
  shift
  install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}"
  configure_and_build "kaban-bench-$name"
  log "running bench $name"
  "$(build_dir)/bin/kaban-bench-$name" "$@"
}

case "${1:-help}" in
  test) cmd_test ;;
  bench) shift; cmd_bench "$@" ;;
  build) install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}"; configure_and_build ;;
  deps) install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}" ;;
  help | -h | --help) usage ;;
  *) echo "error: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
