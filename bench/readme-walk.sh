#!/usr/bin/env bash
# The README's first hour, timed: a fresh clone, an empty npm cache, `npm ci && npm start` (which
# builds on its first run), then `atrium demo`, the demo configuration served, and Chromium logged in as the
# demo radiologist searching a name, opening the patient and the exam until the viewer paints
# an image. Prints the seconds at each step. Usage: bench/readme-walk.sh [repository] (default:
# this checkout). Needs /usr/bin/chromium; uses ports 8042, 11112 and 2575 as the README does.
set -euo pipefail
repo="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
work="$(mktemp -d /tmp/atrium-readme-walk.XXXXXX)"
# Stops the Atrium this walk started (found by its working folder, not another one on the machine).
stop() {
  for pid in $(pgrep -f 'bin/atrium.mjs serve' || true); do
    [ "$(readlink "/proc/$pid/cwd" || true)" = "$work/atrium" ] && kill -INT "$pid" || true
  done
  wait || true
}
trap stop EXIT
export npm_config_cache="$work/npm-cache"
t0=$(date +%s.%N)
stamp() { printf '%7.1f s  %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
serving() { for _ in $(seq 1 1500); do grep -q 'atrium is serving' "$1" && return 0; sleep 0.2; done; echo "not serving: $1" >&2; exit 1; }
stamp "start ($(uptime | sed 's/.*load/load/'))"
git clone -q "$repo" "$work/atrium" && cd "$work/atrium"
stamp "cloned $(git log -1 --format=%h)"
npm ci --no-audit --no-fund > "$work/npm-ci.log" 2>&1
stamp "npm ci"
npm start > "$work/start.log" 2>&1 &
serving "$work/start.log"
stamp "npm start (building the server and the portal first): serving"
stop
node bin/atrium.mjs demo > "$work/demo.out" 2> "$work/demo.err"
stamp "atrium demo"
password=$(grep -oP 'password, shown this once: \K\S+' "$work/demo.err")
npm start -- --config data/demo.yaml > "$work/demo-start.log" 2>&1 &
serving "$work/demo-start.log"
stamp "npm start -- --config data/demo.yaml: serving"
portal=$(grep 'atrium is serving' "$work/demo-start.log" | grep -oP '"portal":"\K[^"]+')
DEMO_PASSWORD="$password" PORTAL="$portal" SCREENSHOT="$work/viewer.png" node "$repo/bench/readme-walk-viewer.mjs"
stamp "viewer shows an image (screenshot $work/viewer.png)"
