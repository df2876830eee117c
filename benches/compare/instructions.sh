#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: nginx proxy_pass
# (no auth) and jwtgate's HS256 access route, in front of the same upstream as
# run.sh. Unlike req/s on this shared VM, the count barely moves between runs,
# so it is what a change to the hot path is judged by (BENCHMARKS.md). It leaves
# out the kernel, which does the same socket work for both. (Under valgrind,
# aws-lc takes its AVX SHA-256 path instead of the SHA-NI instructions the
# hardware has; since the token cache stopped hashing tokens with SHA-256, none
# runs on this route.)
#
#   benches/compare/instructions.sh      (about 1 minute after the build)
#
# Env: DURATION of the counted wrk run (default 6s). Loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-6s}
SECRET=compare-secret-compare-secret-0123456789

source "$HERE/common.sh"
need nginx wrk valgrind  # valgrind brings callgrind_control
build_jwtgate release instructions
start_upstream

# count SLUG NAME PORT TOKEN COMMAND...: starts COMMAND under callgrind, pinned
# to CPU 0 as in run.sh, with counting off; warms up, counts one wrk run and
# prints instructions per request.
count() {
  local slug=$1 name=$2 port=$3 token=$4; shift 4
  local out="$WORK/$slug.callgrind"
  taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" > "$WORK/$slug.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$port" 600
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  taskset -c 1 wrk -t1 -c20 -d2s "${auth[@]}" "http://127.0.0.1:$port/api/x" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  local result; result=$(taskset -c 1 wrk -t1 -c20 -d"$DURATION" "${auth[@]}" "http://127.0.0.1:$port/api/x")
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if grep -q "Non-2xx" <<<"$result"; then echo "instructions.sh: $name answered non-2xx" >&2; exit 1; fi
  local requests; requests=$(awk '/requests in/ {print $1}' <<<"$result")
  local dump; dump=$(ls "$out".* | head -1)
  local total; total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '| %s | %s | %s |\n' "$name" "$requests" "$((total / requests))"
}

echo "| contestant | requests counted | instructions per request |"
echo "|---|---:|---:|"
NGINX_PORT=$(free_port)
render "$HERE/nginx-proxy.conf" "$WORK/nginx-proxy.conf" "PORT=$NGINX_PORT"
# master_process off: the one process callgrind starts is the one that serves.
sed -i 's/^daemon off;/daemon off;\nmaster_process off;/' "$WORK/nginx-proxy.conf"
count nginx-proxy "nginx proxy_pass, no auth" "$NGINX_PORT" "" \
  nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" -e "$WORK/nginx-proxy-error.log"

HS_PORT=$(free_port)
render "$HERE/jwtgate.toml" "$WORK/hs256.toml" "PORT=$HS_PORT" "NAME=hs256" "KEY=secret = \"$SECRET\""
HS_TOKEN=$("$JWTGATE" token mint -c "$WORK/hs256.toml" --sub bench)
export TOKIO_WORKER_THREADS=1
count jwtgate-hs256 "jwtgate, HS256 access route" "$HS_PORT" "$HS_TOKEN" \
  "$JWTGATE" run -c "$WORK/hs256.toml"
