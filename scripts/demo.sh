#!/usr/bin/env bash
# A guided tour of otactl against a private Mosquitto and simulated devices:
# register a firmware, learn the fleet, watch a verification round fail on a
# device that rejects the checksum, pass on healthy devices, and roll the
# firmware out to the rest of the healthy fleet.
#
# Usage: scripts/demo.sh           (or: make demo)
#   KEEP=1        keep the temp dir (state file, broker log, simulator logs)
#   STEP_DELAY=D  pause between a simulated device's progress reports (2s)
#
# Everything runs in a temp dir and on a free loopback port; the system
# broker on port 1883, if any, is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

STEP_DELAY=${STEP_DELAY:-2s}
PRODUCT=demo-pk
FROM=1.0.0
TARGET=2.0.0
FW="$PRODUCT/$TARGET"

# ---- printing -------------------------------------------------------------

if [ -t 1 ]; then
  bold=$'\033[1m' dim=$'\033[2m' red=$'\033[31m' reset=$'\033[0m'
else
  bold="" dim="" red="" reset=""
fi
step_no=0
heading() {
  step_no=$((step_no + 1))
  printf '\n%s== %d. %s%s\n' "$bold" "$step_no" "$*" "$reset"
}
note() { printf '%s   %s%s\n' "$dim" "$*" "$reset"; }
die() {
  printf '%sdemo failed: %s%s\n' "$red" "$*" "$reset" >&2
  exit 1
}
# say prints a command line written out whole, as a reader would type it.
say() { printf '%s$ %s%s\n' "$bold" "$*" "$reset"; }
# quoted writes a command given word by word as a shell line, quoting the
# words that need it, so that it can be pasted back into a shell.
quoted() {
  local line="" w
  for w in "$@"; do
    case $w in
      *[!A-Za-z0-9_./:=,@%+-]* | "") w="'${w//\'/\'\\\'\'}'" ;;
    esac
    line+="${line:+ }$w"
  done
  printf '%s' "$line"
}
# show prints a command given word by word.
show() { say "$(quoted "$@")"; }
# run shows a command and runs it; any non-zero exit ends the demo. stderr
# joins stdout so that messages stay next to the command that printed them.
run() {
  show "$@"
  "$@" 2>&1
}
# expect_exit shows a command, runs it, and requires exit code $1.
expect_exit() {
  local want=$1 got=0
  shift
  show "$@"
  "$@" 2>&1 || got=$?
  [ "$got" -eq "$want" ] || die "expected exit code $want from '$*', got $got"
  note "exit code $got, as expected"
}

# ---- cleanup --------------------------------------------------------------

# stop_within waits up to $1 seconds for process $2 to exit, then kills it.
stop_within() {
  local i
  for i in $(seq $(($1 * 10))); do
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$2" 2>/dev/null
  wait "$2" 2>/dev/null
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/otactl-demo.XXXXXX")
broker_pid="" sim_pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "${#sim_pids[@]}" -gt 0 ]; then
    echo
    note "stopping the simulators (SIGINT: each prints its summary)"
    for pid in "${sim_pids[@]}"; do kill -INT "$pid" 2>/dev/null; done
    for pid in "${sim_pids[@]}"; do stop_within 5 "$pid"; done
    for log in "$tmp"/sim-*.log; do
      [ -f "$log" ] || continue
      note "summary of $(basename "$log" .log):"
      sed -n '/summary/,$p' "$log" | sed 's/^/     /'
    done
  fi
  if [ -n "$broker_pid" ]; then
    kill -TERM "$broker_pid" 2>/dev/null
    stop_within 5 "$broker_pid"
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    note "kept $tmp (state file, broker log, simulator logs); look around with"
    note "  OTACTL_STATE=$tmp/state.db $tmp/bin/otactl firmware list"
  else
    rm -rf "$tmp"
  fi
  if [ "$rc" -eq 0 ]; then
    printf '\n%sdemo finished%s\n' "$bold" "$reset"
  else
    printf '\n%sdemo stopped with exit code %d%s\n' "$red" "$rc" "$reset" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites --------------------------------------------------------

find_mosquitto() {
  command -v mosquitto 2>/dev/null && return 0
  # Debian installs it in /usr/sbin, which a normal user's PATH often lacks.
  [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto
}

heading "Check the tools: Go and Mosquitto"
command -v go >/dev/null || die "go is not installed: see https://go.dev/doc/install"
if ! mosquitto=$(find_mosquitto); then
  note "mosquitto is missing; installing the Debian package"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || die "no apt-get here: install mosquitto yourself"
  run $sudo apt-get update -qq
  run $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
  note "the package may also start a system broker on port 1883; the demo does not use it"
  mosquitto=$(find_mosquitto) || die "mosquitto is still not found after apt-get"
fi
note "go: $(command -v go), mosquitto: $mosquitto"

heading "Build otactl"
mkdir -p "$tmp/bin"
run go build -o "$tmp/bin/otactl" ./cmd/otactl
export PATH="$tmp/bin:$PATH"

# ---- broker ---------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_broker writes a config for port $1 and starts Mosquitto; it returns
# non-zero when the broker does not listen within 5 s (port taken, say).
start_broker() {
  local port=$1 dir="$tmp/mosquitto"
  mkdir -p "$dir"
  {
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $dir/"
    echo "log_dest stderr"
    # As root, Mosquitto would drop to user mosquitto, which cannot write
    # the persistence file into our temp dir.
    [ "$(id -u)" -eq 0 ] && echo "user root"
  } >"$dir/mosquitto.conf"
  "$mosquitto" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 &
  broker_pid=$!
  local i
  for i in $(seq 50); do
    if ! kill -0 "$broker_pid" 2>/dev/null; then
      wait "$broker_pid" 2>/dev/null || true
      broker_pid=""
      return 1
    fi
    port_in_use "$port" && return 0
    sleep 0.1
  done
  kill -TERM "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
  return 1
}

heading "Start a private Mosquitto on a free loopback port"
port=$((20000 + RANDOM % 40000))
for attempt in $(seq 20); do
  port=$((port + 1))
  port_in_use "$port" && continue
  start_broker "$port" && break
done
if [ -z "$broker_pid" ]; then
  sed "s/^/   mosquitto: /" "$tmp/mosquitto/mosquitto.log" >&2
  die "could not start mosquitto on a free loopback port"
fi
say "$mosquitto -c $tmp/mosquitto/mosquitto.conf &"
note "listening on 127.0.0.1:$port, config, persistence and log in $tmp/mosquitto"

run export OTACTL_BROKER="tcp://127.0.0.1:$port"
run export OTACTL_STATE="$tmp/state.db"
note "every otactl command below reads the broker and state file from these"

# ---- firmware -------------------------------------------------------------

heading "Register a firmware image"
note "a 256 KiB image of random bytes stands in for a real build"
say "head -c 262144 /dev/urandom > $tmp/fw-$TARGET.bin"
head -c 262144 /dev/urandom >"$tmp/fw-$TARGET.bin"
run otactl firmware add --product "$PRODUCT" --version "$TARGET" --file "$tmp/fw-$TARGET.bin" \
  --desc "demo image"

# ---- fleet ----------------------------------------------------------------

heading "Create otactl's session on the broker, before any device connects"
note "otactl is not a daemon: each command picks up what the broker queued"
note "for its persistent session since the last run. The broker queues only"
note "for a session it knows, so the first sync must come before the devices."
run otactl sync

heading "Bring up a simulated fleet"
note "6 healthy devices (sim-1..sim-6) and 1 that fails every checksum (bad-1),"
note "all on $FROM; they run in the background, logging to $tmp/sim-*.log"
sim() {
  local name=$1
  shift
  say "$(quoted otactl simulate "$@") &"
  otactl simulate "$@" >"$tmp/sim-$name.log" 2>&1 &
  sim_pids+=("$!")
}
sim good --product "$PRODUCT" --devices 6 --version "$FROM" --step-delay "$STEP_DELAY"
sim bad --product "$PRODUCT" --devices 1 --version "$FROM" --key-prefix bad- \
  --fail-rate 1 --fail-mode verify --step-delay "$STEP_DELAY"

heading "Wait until otactl has heard from all 7 devices"
say "otactl sync --json   # repeated until it reports 7 devices"
devices=0
for i in $(seq 30); do
  for pid in "${sim_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && continue
    tail -n 5 "$tmp"/sim-*.log >&2
    die "a simulator exited early"
  done
  devices=$(otactl sync --json | sed -n 's/.*"devices": *\([0-9]*\).*/\1/p')
  [ "${devices:-0}" -ge 7 ] && break
  sleep 1
done
[ "${devices:-0}" -ge 7 ] || die "after 30 s otactl knows ${devices:-0} of 7 devices"
note "otactl knows $devices devices"
run otactl device list --product "$PRODUCT"
run otactl versions --product "$PRODUCT"

# ---- verification round 1: fails ------------------------------------------

heading "Verify the firmware on a healthy device and on the bad one"
run otactl verify start "$FW" --from-version "$FROM" --device sim-1,bad-1
note "the firmware is now verifying: no batch upgrade may use it until a round passes"
run otactl firmware list --product "$PRODUCT"

heading "Wait for the round; a failed job makes --wait exit 6"
note "in CI, this exit code is what stops the pipeline"
expect_exit 6 otactl verify status "$FW" --wait --timeout 2m
run otactl firmware show "$FW"

# ---- verification round 2: passes -----------------------------------------

heading "Verify again on two other healthy devices"
note "a firmware keeps every round; only the newest one counts"
run otactl verify reverify "$FW" --from-version "$FROM" --device sim-2,sim-3
run otactl verify status "$FW" --wait --timeout 2m
run otactl firmware show "$FW"
run otactl versions --product "$PRODUCT"

# ---- batch upgrade --------------------------------------------------------

# healthy lists the devices the rollout takes, as the demo shows it typed.
healthy_cmd="otactl device list --product $PRODUCT --version $FROM | cut -f2 | grep '^sim-'"
healthy() { otactl device list --product "$PRODUCT" --version "$FROM" | cut -f2 | grep '^sim-'; }

heading "Plan a batch upgrade of the healthy devices (dry run)"
note "refused for any firmware that did not pass; --dry-run changes nothing"
note "the device keys come from device list through a pipe: --devices-file -"
say "$healthy_cmd |"
printf '%s    %s%s\n' "$bold" "otactl batch-upgrade $FW --devices-file - --dry-run" "$reset"
healthy | otactl batch-upgrade "$FW" --devices-file - --dry-run 2>&1

heading "Roll out to the healthy devices, two at a time"
say "$healthy_cmd |"
printf '%s    %s%s\n' "$bold" \
  "otactl batch-upgrade $FW --devices-file - --max-concurrent 2 --wait --wait-timeout 5m" "$reset"
healthy | otactl batch-upgrade "$FW" --devices-file - --max-concurrent 2 --wait --wait-timeout 5m 2>&1
run otactl batch-upgrade list
run otactl versions --product "$PRODUCT"
note "bad-1 stays on $FROM: it rejects this image, and the rollout left it out"
