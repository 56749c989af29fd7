#!/usr/bin/env bash
# The one entry point for building, testing and benchmarking Kaban on Debian 12.
# Run `packaging/dev.sh help` for the commands.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian 12 packages the build and the tests need. Nothing else is downloaded.
BUILD_DEPS=(cmake make g++ ccache pkg-config libboost-dev libssl-dev libsqlite3-dev
  libsqlitecpp-dev nlohmann-json3-dev libgtest-dev libcli11-dev libzip-dev libpugixml-dev
  zlib1g-dev sqlite3)
# Baselines the benchmarks compare against (the test suite runs a short pass of each; the
# integration tests also put nginx in front of the server as a chunk cache).
BENCH_DEPS=(libsqlcipher-dev nginx curl rsync)

usage() {
  cat <<USAGE
Usage: packaging/dev.sh COMMAND [ARGS]

Commands:
  demo           install what is missing, build, and show the whole flow: a server publishes the
                 sample course, a device enrolls, syncs over mutual TLS, and reads it offline
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

# The walking skeleton, end to end, in a fresh temporary directory (kept so the person can try
# more; nothing is left running).
cmd_demo() {
  install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}"
  configure_and_build kaban kaban-server
  local bin work server_pid="" pin="demo-pin-2468"
  bin="$(build_dir)/bin"
  work=$(mktemp -d "${TMPDIR:-/tmp}/kaban-demo.XXXXXX")
  # shellcheck disable=SC2317  # called by the trap
  stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
      kill -TERM "$server_pid" 2>/dev/null || true
      wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
  }
  trap stop_server EXIT
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
  run() {
    printf '$'
    printf ' %q' "$@"
    printf '\n'
    "$@"
  }
  local server=(kaban-server --data-dir "$work/server")
  local device=(kaban --data-dir "$work/device")
  export PATH="$bin:$PATH"

  step "1. IT creates the server: CA, TLS certificate, content-signing key, database"
  run "${server[@]}" init
  step "2. The training office publishes the sample course"
  run "${server[@]}" admin course publish "$ROOT/packaging/sample-course"
  # start_server [ADDRESS]: serves in the background (on a free port, or on ADDRESS again) and
  # waits until it listens; sets server_pid and address.
  start_server() {
    "${server[@]}" serve --listen "${1:-127.0.0.1:0}" >"$work/serve.out" 2>>"$work/server.log" &
    server_pid=$!
    local waited=0
    until grep -q "^listening on" "$work/serve.out" 2>/dev/null; do
      if ! kill -0 "$server_pid" 2>/dev/null || [ $waited -ge 100 ]; then
        echo "error: the server did not start:" >&2
        cat "$work/server.log" >&2
        exit 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    cat "$work/serve.out"
    address=$(sed -n 's|^listening on https://||p' "$work/serve.out")
  }
  local address=""
  step "3. The server starts on a free port (its log: one JSON line per request)"
  start_server
  step "4. IT adds two staff members, a team channel, and a one-time enrollment code for Aiko"
  run "${server[@]}" admin user add aiko --name "Aiko Tanaka"
  run "${server[@]}" admin user add ken --name "Ken Mori"
  run "${server[@]}" admin channel add shelter-3 --title "Shelter 3 team"
  run "${server[@]}" admin channel members add shelter-3 aiko ken
  local line
  line=$("${server[@]}" admin enroll-code aiko --ttl 1h)
  echo "$line"
  step "5. Aiko enrolls her phone with that line (the PIN comes from KABAN_PIN here)"
  KABAN_PIN=$pin run "${device[@]}" enroll "$line"
  step "6. IT sends an urgent announcement everyone must acknowledge (one row, whatever the audience)"
  local drill
  drill=$("${server[@]}" admin announce all --priority urgent --require-ack \
    "Evacuation drill at 15:00. Acknowledge when you have read the route.")
  echo "message id: $drill"
  step "7. Aiko syncs: check-in, her messages first, then the signed course, chunks verified"
  KABAN_PIN=$pin run "${device[@]}" sync
  KABAN_PIN=$pin run "${device[@]}" messages
  run "${server[@]}" admin device list
  step "8. The network goes away: the server stops"
  kill -TERM "$server_pid"
  local server_status=0
  wait "$server_pid" || server_status=$?
  server_pid=""
  echo "server stopped on SIGTERM after draining its connections (exit status $server_status)"
  tail -n 3 "$work/server.log"
  step "9. Offline: list the courses and lessons, open a lesson from the encrypted store"
  KABAN_PIN=$pin run "${device[@]}" courses
  KABAN_PIN=$pin run "${device[@]}" lessons shelter-opening
  KABAN_PIN=$pin run "${device[@]}" open shelter-opening/checklist --out "$work/checklist.pdf"
  run cmp "$work/checklist.pdf" "$ROOT/packaging/sample-course/shelter-checklist.pdf"
  echo "byte-identical to what was published"
  if grep -rqa "evacuation shelter" "$work/device"; then
    echo "error: course text found in the device's data directory" >&2
    exit 1
  fi
  echo "and no course text in the device's data directory: $(ls "$work/device" | tr '\n' ' ')"
  step "10. Still offline, Aiko writes to her team, acknowledges the drill, finishes a lesson"
  KABAN_PIN=$pin run "${device[@]}" send shelter-3 "Water delivered to shelter 3: 200 bottles."
  KABAN_PIN=$pin run "${device[@]}" ack "$drill"
  KABAN_PIN=$pin run "${device[@]}" complete shelter-opening/checklist --duration 12m
  KABAN_PIN=$pin run "${device[@]}" messages shelter-3
  KABAN_PIN=$pin run "${device[@]}" outbox
  step "11. The network is back: one sync sends the outbox, each item applied once"
  start_server "$address"
  KABAN_PIN=$pin run "${device[@]}" sync
  KABAN_PIN=$pin run "${device[@]}" messages shelter-3
  KABAN_PIN=$pin run "${device[@]}" progress
  step "12. IT sees who acknowledged the drill, and course completion"
  run "${server[@]}" admin acks "$drill"
  run "${server[@]}" admin report completion
  step "13. The training office revises the course; Aiko's update fetches only what changed"
  cp -r "$ROOT/packaging/sample-course" "$work/course-v2"
  sed -i 's|</h1>|</h1>\n<p>Revised: register arrivals by household, not one by one.</p>|' \
    "$work/course-v2/index.html"
  run "${server[@]}" admin course publish "$work/course-v2"
  KABAN_PIN=$pin run "${device[@]}" sync
  KABAN_PIN=$pin run "${device[@]}" storage
  echo "a shelter with no network gets the same version on a USB stick (\`kaban import FILE\`):"
  run "${server[@]}" admin course bundle shelter-opening --out "$work/shelter-opening.kaban"

  step "14. IT sets device policies: a default for everyone, a stricter one for contractors"
  cat >"$work/default-policy.json" <<'JSON'
{"description": "City staff: block after 12 h offline, wipe after 30 days",
 "offline_block_minutes": 720, "offline_wipe_days": 30, "pin_max_attempts": 8}
JSON
  cat >"$work/contractors-policy.json" <<'JSON'
{"description": "Contractors' own laptops: current agent only, no files out",
 "min_agent_version": {"linux": {"version": "99.0", "action": "block"}},
 "allow_export": false}
JSON
  printf 'login,name,groups\nsato,Sato Kenji,contractors\n' >"$work/staff.csv"
  run cat "$work/contractors-policy.json"
  run "${server[@]}" admin group add contractors --title "Contractors"
  run "${server[@]}" admin group import "$work/staff.csv"
  run "${server[@]}" admin policy set "$work/default-policy.json"
  run "${server[@]}" admin policy set "$work/contractors-policy.json" --group contractors
  run "${server[@]}" admin policy show --user sato
  step "15. Sato enrolls his laptop; its agent is older than the contractors' policy allows"
  local laptop=(kaban --data-dir "$work/laptop") status=0
  line=$("${server[@]}" admin enroll-code sato --ttl 1h)
  KABAN_PIN=$pin run "${laptop[@]}" enroll "$line"
  run "${server[@]}" admin announce contractors "Contractors: update Kaban to 99.0 this week."
  KABAN_PIN=$pin run "${laptop[@]}" sync
  echo "the laptop may read IT's messages, nothing else:"
  KABAN_PIN=$pin run "${laptop[@]}" messages
  KABAN_PIN=$pin run "${laptop[@]}" courses || status=$?
  echo "(exit status $status: blocked by policy)"
  run "${server[@]}" admin report compliance
  step "16. Aiko loses her phone: IT queues a wipe, carried out and acknowledged at its next check-in"
  local phone_id
  phone_id=$(KABAN_PIN=$pin "${device[@]}" status | sed -n 's/^device id *//p')
  run "${server[@]}" admin device wipe "${phone_id:0:12}"
  run "${server[@]}" admin device list
  status=0
  KABAN_PIN=$pin run "${device[@]}" sync || status=$?
  echo "(exit status $status: wiped)"
  echo "what is left on the phone: $(ls "$work/device" | tr '\n' ' ')(the record of the wipe, no data)"
  run "${device[@]}" status
  run "${server[@]}" admin device list
  step "17. The audit log: every admin action and security event, in UTC, no secrets"
  run "${server[@]}" admin audit
  stop_server
  trap - EXIT

  step "Try next"
  cat <<NEXT
  export KABAN_HOME=$work/laptop KABAN_PIN=$pin
  kaban status                                   # verdict and reasons, lease, last sync
  kaban policy                                   # the policy this device obeys, offline too
  kaban-server --data-dir $work/server admin policy remove --group contractors
  kaban-server --data-dir $work/server serve --listen $address &   # then: kaban sync; kaban courses
  kaban sync --watch                             # stay connected; new messages within a second
  kaban open shelter-opening/welcome             # the HTML lesson on stdout
  kaban-server --data-dir $work/server admin report compliance --csv
  rm -rf $work                                   # when done
  (the programs are in $bin)
NEXT
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
  demo) cmd_demo ;;
  test) cmd_test ;;
  bench) shift; cmd_bench "$@" ;;
  build) install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}"; configure_and_build ;;
  deps) install_missing "${BUILD_DEPS[@]}" "${BENCH_DEPS[@]}" ;;
  help | -h | --help) usage ;;
  *) echo "error: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
