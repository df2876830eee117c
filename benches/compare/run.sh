#!/usr/bin/env bash
# Peer comparison (issue 6, DESIGN.md §12): the same upstream, the same CPU
# budget, one run. Each proxy is pinned to CPU 0 with one worker (nginx
# worker_processes 1, HAProxy nbthread 1, jwtgate TOKIO_WORKER_THREADS=1);
# the shared upstream (nginx `return 200`) and wrk share CPU 1.
#
#   benches/compare/run.sh            full table, refresh row, p99 at half peak, idle memory
#                                     (about 11 min after the builds at ROUNDS=3)
#   benches/compare/run.sh --smoke    jwtgate's part only, on a debug build: the
#                                     HS256, RS256, ES256 and implicit-refresh
#                                     rows for 1 s each, pace for 400 requests
#                                     and 200 idle connections; exits non-zero
#                                     if any request fails or a check misses
#
# Env: DURATION (default 10s), CONNS (default 32), ROUNDS (default 3), PGO
# (default 1: also build jwtgate with scripts/pgo-build.sh, about 10 min, and
# run its HS256 row beside the plain release build's). Loopback only.
#
# Each throughput row is measured in ROUNDS rounds, all contestants in turn
# per round, and shown by its median round: on a shared VM one run moves by
# ±10 %, and alternating spreads that drift over all contestants alike. The
# added p99 is the median of ROUNDS alternating direct/nginx/jwtgate runs of
# pace (benches/compare/pace.rs: a fixed rate, evenly spread, timed from each
# request's due time), and, for comparison with earlier runs, of hey.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROUNDS must be a whole number of at least 1 (odd, for a true median), not '$ROUNDS'" >&2; exit 1; }
PGO=${PGO:-1}
[[ $PGO =~ ^[01]$ ]] || { echo "run.sh: PGO must be 1 (build and run the profile-guided binary too) or 0, not '$PGO'" >&2; exit 1; }
if [ $SMOKE = 1 ]; then PGO=0; DURATION=1s; CONNS=4; ROUNDS=1; fi
SECRET=compare-secret-compare-secret-0123456789

source "$HERE/common.sh"
if [ $SMOKE = 1 ]; then need nginx wrk curl python3 procps; else need nginx libnginx-mod-http-js haproxy wrk hey curl python3 procps; fi

PROFILE=release
[ $SMOKE = 1 ] && PROFILE=dev
# With pace, the fixed-rate client of the half-peak p99.
build_jwtgate $PROFILE compare --example pace
PACE="$BUILT/examples/pace"
pace_run() { # pace_run PORT RATE DURATION [TOKEN]: pace's line for GET /api/x, from CPU 1
  local auth=()
  [ -n "${4:-}" ] && auth=(-H "Authorization: Bearer $4")
  taskset -c 1 "$PACE" --rate "$2" --conns "$CONNS" --duration "$3" --tick 100us "${auth[@]}" "http://127.0.0.1:$1/api/x"
}
# Before the upstream starts: the PGO build trains against one of its own.
[ $PGO = 1 ] && JWTGATE_PGO=$(bash "$ROOT/scripts/pgo-build.sh")
start_upstream

# jwtgate configs and tokens: HS256, RS256, ES256.
jwtgate_config() { # name key-lines
  local port; port=$(free_port)
  render "$HERE/jwtgate.toml" "$WORK/$1.toml" "PORT=$port" "NAME=$1" "KEY=$2"
  echo "$port"
}
HS_PORT=$(jwtgate_config hs256 "secret = \"$SECRET\"")
HS_TOKEN=$("$JWTGATE" token mint -c "$WORK/hs256.toml" --sub bench)
"$JWTGATE" keygen --alg RS256 --out "$WORK/rs256" >/dev/null
"$JWTGATE" keygen --alg ES256 --out "$WORK/es256" >/dev/null
RS_PORT=$(jwtgate_config rs256 "algorithm = \"RS256\"
private_key = \"$WORK/rs256/signing.pem\"")
ES_PORT=$(jwtgate_config es256 "algorithm = \"ES256\"
private_key = \"$WORK/es256/signing.pem\"")
RS_TOKEN=$("$JWTGATE" token mint -c "$WORK/rs256.toml" --sub bench)
ES_TOKEN=$("$JWTGATE" token mint -c "$WORK/es256.toml" --sub bench)

# CPU time a contestant spends per request, from /proc: the process and its
# children (nginx's worker), user and kernel, over the measured wrk run.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID: "user kernel" clock ticks of PID and its children
  local u=0 k=0 p pu pk
  for p in "$1" $(pgrep -P "$1"); do
    read -r pu pk < <(awk '{print $14, $15}' "/proc/$p/stat") || continue
    u=$((u + pu)); k=$((k + pk))
  done
  echo "$u $k"
}
cpu_per_request() { # cpu_per_request "TICKS_BEFORE" "TICKS_AFTER" WRK_OUTPUT_FILE: "total/user/kernel" µs
  python3 - "$1" "$2" "$3" "$CLK_TCK" <<'PY'
import re, sys
(u0, k0), (u1, k1) = (map(int, t.split()) for t in sys.argv[1:3])
n = int(re.search(r"(\d+) requests in", open(sys.argv[3]).read()).group(1))
per = 1e6 / int(sys.argv[4]) / n
print(f"{(u1 - u0 + k1 - k0) * per:.1f}/{(u1 - u0) * per:.1f}/{(k1 - k0) * per:.1f}")
PY
}

# One row of one round: name, port, token ("" = none), command... (started
# pinned to CPU 0). The wrk output is kept as $WORK/NAME.ROUND.wrk. The CPU
# measured is the command's; a contestant started outside (command `true`)
# names its process in MEASURE_PID, and the direct row has none.
ROWS=()
ROUND=1
MEASURE_PID=""
run_row() {
  local name=$1 port=$2 token=$3; shift 3
  local wrk_out="$WORK/$name.$ROUND.wrk"
  taskset -c 0 "$@" > "$WORK/$name.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local measured=$pid
  [ "$1" = true ] && measured=$MEASURE_PID
  wait_port "$port"
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  # Correctness first: the token passes, and (for auth contestants) no token is refused.
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$port/api/x")
  [ "$code" = 200 ] || { echo "run.sh: $name answered $code to a valid request" >&2; cat "$WORK/$name.out" >&2; exit 1; }
  if [ -n "$token" ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/x")
    [ "$code" = 401 ] || { echo "run.sh: $name answered $code without a token" >&2; exit 1; }
  fi
  local out ticks0="" ticks1=""
  [ $SMOKE = 1 ] || taskset -c 1 wrk -t1 -c"$CONNS" -d2s "${auth[@]}" "http://127.0.0.1:$port/api/x" >/dev/null
  [ -n "$measured" ] && ticks0=$(cpu_ticks "$measured")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${auth[@]}" "http://127.0.0.1:$port/api/x")
  [ -n "$measured" ] && ticks1=$(cpu_ticks "$measured")
  echo "$out" > "$wrk_out"
  check_wrk "$name" "$out"
  local rss="" cpu=""
  [ "${name#jwtgate}" != "$name" ] && rss=$(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$pid/status")
  [ -n "$measured" ] && cpu=$(cpu_per_request "$ticks0" "$ticks1" "$wrk_out")
  ROWS+=("$name|$(python3 "$HERE/parse_wrk.py" < "$wrk_out")|$rss|$cpu")
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

# check_wrk NAME OUTPUT: stops the run on a failed request, and in the smoke
# run on one that sent fewer than 20 (a row that never really ran).
check_wrk() {
  if grep -q "Non-2xx\|Socket errors" <<<"$2"; then
    echo "run.sh: $1 had failed requests:" >&2; echo "$2" >&2; exit 1
  fi
  local n; n=$(grep -o '[0-9]* requests in' <<<"$2" | cut -d' ' -f1)
  [ $SMOKE = 0 ] || [ "${n:-0}" -ge 20 ] || { echo "run.sh: $1 sent only ${n:-no} requests:" >&2; echo "$2" >&2; exit 1; }
}

export TOKIO_WORKER_THREADS=1
NGX_PORT=$(free_port); render "$HERE/nginx-proxy.conf" "$WORK/nginx-proxy.conf" "PORT=$NGX_PORT"
NJS_PORT=$(free_port); render "$HERE/nginx-njs.conf" "$WORK/nginx-njs.conf" "PORT=$NJS_PORT"
HAP_HS=$(free_port); HAP_RS=$(free_port)
render "$HERE/haproxy.cfg" "$WORK/haproxy.cfg" "PORT_HS=$HAP_HS" "PORT_RS=$HAP_RS"
for ROUND in $(seq 1 "$ROUNDS"); do
  echo "run.sh: throughput round $ROUND of $ROUNDS" >&2
  if [ $SMOKE = 0 ]; then # the peers
    run_row direct "$UPSTREAM_PORT" "" true
    run_row nginx-proxy_pass "$NGX_PORT" "" nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" -e "$WORK/nginx-proxy-error.log"
    run_row nginx-njs-hs256 "$NJS_PORT" "$HS_TOKEN" nginx -c "$WORK/nginx-njs.conf" -p "$WORK" -e "$WORK/nginx-njs-error.log"
    taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.out" 2>&1 &
    HAP_PID=$!; PIDS+=("$HAP_PID")
    wait_port "$HAP_HS"
    MEASURE_PID=$HAP_PID
    run_row haproxy-jwt_verify-hs256 "$HAP_HS" "$HS_TOKEN" true
    run_row haproxy-jwt_verify-rs256 "$HAP_RS" "$RS_TOKEN" true
    MEASURE_PID=""
    kill "$HAP_PID" 2>/dev/null || true; wait "$HAP_PID" 2>/dev/null || true
  fi
  run_row jwtgate-hs256 "$HS_PORT" "$HS_TOKEN" "$JWTGATE" run -c "$WORK/hs256.toml"
  [ $PGO = 1 ] && run_row jwtgate-hs256-pgo "$HS_PORT" "$HS_TOKEN" "$JWTGATE_PGO" run -c "$WORK/hs256.toml"
  run_row jwtgate-rs256 "$RS_PORT" "$RS_TOKEN" "$JWTGATE" run -c "$WORK/rs256.toml"
  run_row jwtgate-es256 "$ES_PORT" "$ES_TOKEN" "$JWTGATE" run -c "$WORK/es256.toml"
done

# Implicit refresh: every request rotates. Sessions come from real logins
# (the upstream's /login always names `bench`); each wrk run gets its own, as
# a token from the warm-up would be a reuse (family revoked) afterwards.
REFRESH_PORT=$(free_port)
render "$HERE/jwtgate-refresh.toml" "$WORK/refresh.toml" "PORT=$REFRESH_PORT" "SECRET=$SECRET"
taskset -c 0 "$JWTGATE" run -c "$WORK/refresh.toml" > "$WORK/jwtgate-refresh.out" 2>&1 &
REFRESH_PID=$!; PIDS+=("$REFRESH_PID")
wait_port "$REFRESH_PORT"
logins "$REFRESH_PORT" 1 "$WORK/check.tokens"
code=$(curl -s -o /dev/null -D "$WORK/check.head" -w '%{http_code}' -b "refresh_token_cookie=$(cat "$WORK/check.tokens")" "http://127.0.0.1:$REFRESH_PORT/api/x")
grep -qi '^set-cookie: refresh_token_cookie=' "$WORK/check.head" && [ "$code" = 200 ] ||
  { echo "run.sh: jwtgate-refresh did not refresh ($code)" >&2; exit 1; }
logins "$REFRESH_PORT" $((CONNS + 1)) "$WORK/warm.tokens"  # +1: wrk calls request() once before the run, and never sends it
logins "$REFRESH_PORT" $((CONNS + 1)) "$WORK/measure.tokens"
[ $SMOKE = 1 ] || taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$HERE/refresh.lua" "http://127.0.0.1:$REFRESH_PORT/api/x" "$WORK/warm.tokens" >/dev/null
ticks0=$(cpu_ticks "$REFRESH_PID")
out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$HERE/refresh.lua" "http://127.0.0.1:$REFRESH_PORT/api/x" "$WORK/measure.tokens")
ticks1=$(cpu_ticks "$REFRESH_PID")
echo "$out" > "$WORK/jwtgate-refresh.1.wrk"
check_wrk jwtgate-refresh "$out"
ROWS+=("jwtgate-refresh (rotation + fsync per request, one round)|$(python3 "$HERE/parse_wrk.py" < "$WORK/jwtgate-refresh.1.wrk")|$(awk '/VmRSS/ {print $2/1024 " MiB"}' "/proc/$REFRESH_PID/status")|$(cpu_per_request "$ticks0" "$ticks1" "$WORK/jwtgate-refresh.1.wrk")")
kill "$REFRESH_PID" 2>/dev/null || true; wait "$REFRESH_PID" 2>/dev/null || true

python3 "$HERE/table.py" "${ROWS[@]}"

if [ $SMOKE = 1 ]; then
  echo "compare smoke: jwtgate HS256, RS256, ES256 and implicit refresh for $DURATION each, every request 200"
  taskset -c 0 "$JWTGATE" run -c "$WORK/hs256.toml" > "$WORK/jwtgate-hs256-pace.out" 2>&1 &
  PACE_PID=$!; PIDS+=("$PACE_PID")
  wait_port "$HS_PORT"
  out=$(pace_run "$HS_PORT" 400 1s "$HS_TOKEN")
  [[ $out =~ ^requests=400\ .*\ p99_ms=[0-9.]+ ]] || { echo "run.sh: pace smoke printed: $out" >&2; exit 1; }
  echo "compare smoke: pace sent 400 requests at 400 req/s through jwtgate HS256 after 400 of warm-up, all 200 ($out)"
  kill "$PACE_PID" 2>/dev/null || true; wait "$PACE_PID" 2>/dev/null || true
fi

# Latency added at half of jwtgate's peak: the same fixed request rate
# straight to the upstream, through nginx proxy_pass (the reference the added
# p99 is judged against) and through jwtgate HS256, both proxies up throughout
# (only the one under load uses CPU 0), in alternating rounds.
#   pace: request i due at start + i/RATE on any free connection, timed from
#     its due time (wrk2's schedule). Its timer goes off at most every 100 µs,
#     so that it and the upstream leave CPU 1 some headroom; a run in which
#     pace itself sent late (lag_p99_ms over 0.3 ms) is refused, as it would
#     measure the client. The judged figure (BENCHMARKS.md).
#   hey -q: per-connection tickers that fire together, so requests arrive in
#     bursts of CONNS and the p99 is mostly a burst's drain time. Kept beside
#     it for comparison with the runs before pace.
HS_RPS=$(python3 -c 'import re,statistics,sys; print(int(statistics.median_low(float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1)) for f in sys.argv[1:])))' "$WORK"/jwtgate-hs256.*.wrk)
RATE=$((HS_RPS / 2))
hey_p99() { # hey_p99 PORT [TOKEN]: p99 in ms at RATE req/s
  local auth=()
  [ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
  local out; out=$(taskset -c 1 hey -z "$DURATION" -c "$CONNS" -q "$(python3 -c "print($RATE / $CONNS)")" "${auth[@]}" "http://127.0.0.1:$1/api/x")
  local codes; codes=$(sed -n '/^Status code distribution:/,/^$/p' <<<"$out" | grep -o '\[[0-9]*\]' | tr -d '\n')
  [ "$codes" = "[200]" ] && ! grep -q 'Error distribution' <<<"$out" ||
    { echo "run.sh: hey saw failures:" >&2; echo "$out" >&2; exit 1; }
  local p99; p99=$(awk '/99% in/ {printf "%.2f", $3 * 1000}' <<<"$out")
  [ -n "$p99" ] || { echo "run.sh: hey printed no 99% latency:" >&2; echo "$out" >&2; exit 1; }
  echo "$p99"
}
# waited_ns PID: nanoseconds PID's threads (and its children's) have spent
# ready to run while their core ran something else (the second field of
# /proc/TID/schedstat). Over a pace run: how long other threads held the
# proxy off CPU 0 (on this VM mostly the kernel's DAMON thread, in slices of
# several ms), the stalls behind both proxies' half-peak p99 (BENCHMARKS.md).
waited_ns() {
  local total=0 p f ns
  for p in "$1" $(pgrep -P "$1"); do
    for f in /proc/"$p"/task/*/schedstat; do
      read -r _ ns _ 2>/dev/null < "$f" && total=$((total + ns))
    done
  done
  echo "$total"
}
[ -r "/proc/$$/schedstat" ] || { echo "run.sh: /proc/PID/schedstat is missing (a kernel without CONFIG_SCHED_INFO); the p99 rounds report from it how long each proxy waited for its core" >&2; exit 1; }
pace_p99() { # pace_p99 NAME PORT [TOKEN [PID]]: p99 in ms at RATE req/s; the whole line kept in
  # $WORK/NAME.ROUND.pace, and how long PID waited for its core during the run in $WORK/NAME.ROUND.wait (ms)
  local before=0; [ -n "${4:-}" ] && before=$(waited_ns "$4")
  local out; out=$(pace_run "$2" "$RATE" "$DURATION" "${3:-}") || return 1
  echo "$out" > "$WORK/$1.$ROUND.pace"
  [ -z "${4:-}" ] || echo $((($(waited_ns "$4") - before) / 1000000)) > "$WORK/$1.$ROUND.wait"
  python3 - "$1" "$out" <<'PY'
import sys
name, out = sys.argv[1], sys.argv[2]
line = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
if "p99_ms" not in line or "lag_p99_ms" not in line:
    sys.exit(f"run.sh: pace printed no p99 for {name}: {out}")
if float(line["lag_p99_ms"]) > 0.3:
    sys.exit(f"run.sh: pace sent late for {name} (lag p99 {line['lag_p99_ms']} ms > 0.3 ms), so it measured itself: {out}")
print(line["p99_ms"])
PY
}
# Both proxies run on CPU 0 throughout; only the one under load uses it.
if [ $SMOKE = 0 ]; then # (not indented: its here-documents end at the line start)
taskset -c 0 nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" -e "$WORK/nginx-proxy-error.log" > "$WORK/nginx-proxy-rate.out" 2>&1 &
NGX_RATE_PID=$!; PIDS+=("$NGX_RATE_PID")
taskset -c 0 "$JWTGATE" run -c "$WORK/hs256.toml" > "$WORK/jwtgate-hs256-rate.out" 2>&1 &
RATE_PID=$!; PIDS+=("$RATE_PID")
wait_port "$NGX_PORT"
wait_port "$HS_PORT"
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$NGX_PORT/api/x" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $HS_TOKEN" "http://127.0.0.1:$HS_PORT/api/x" >/dev/null
PACE_ROUNDS=()
HEY_ROUNDS=()
for ROUND in $(seq 1 "$ROUNDS"); do
  echo "run.sh: p99 round $ROUND of $ROUNDS" >&2
  direct=$(pace_p99 direct "$UPSTREAM_PORT")
  ngx=$(pace_p99 nginx-proxy_pass "$NGX_PORT" "" "$NGX_RATE_PID")
  gate=$(pace_p99 jwtgate-hs256 "$HS_PORT" "$HS_TOKEN" "$RATE_PID")
  PACE_ROUNDS+=("$direct/$ngx/$gate")
  direct=$(hey_p99 "$UPSTREAM_PORT")
  ngx=$(hey_p99 "$NGX_PORT")
  gate=$(hey_p99 "$HS_PORT" "$HS_TOKEN")
  HEY_ROUNDS+=("$direct/$ngx/$gate")
done
kill "$RATE_PID" "$NGX_RATE_PID" 2>/dev/null || true; wait "$RATE_PID" "$NGX_RATE_PID" 2>/dev/null || true
echo
p99_line() { # p99_line CLIENT ROUND...: the added p99s, median over the rounds
  python3 - "$RATE" "$CONNS" "$@" <<'PY'
import statistics, sys
rate, conns, client, rounds = sys.argv[1], sys.argv[2], sys.argv[3], [tuple(map(float, r.split("/"))) for r in sys.argv[4:]]
each = ", ".join(f"{d:.2f} / {n:.2f} / {g:.2f} ms" for d, n, g in rounds)
ngx = statistics.median_low(n - d for d, n, _ in rounds)
gate = statistics.median_low(g - d for d, _, g in rounds)
print(f"p99 at {rate} req/s (half of jwtgate HS256's median peak), {client}, {len(rounds)} alternating rounds of "
      f"direct / nginx proxy_pass / jwtgate HS256: {each}; added over direct, median: "
      f"nginx proxy_pass {ngx:+.2f} ms, jwtgate HS256 {gate:+.2f} ms")
PY
}
p99_line "pace --conns $CONNS --tick 100us (spread arrivals)" "${PACE_ROUNDS[@]}"
python3 - "$WORK" <<'PY'
import glob, sys
lines = [dict(kv.split("=", 1) for kv in open(f).read().split()) for f in glob.glob(f"{sys.argv[1]}/*.pace")]
print(f"pace's own lag p99, highest of the {len(lines)} runs: {max(float(l['lag_p99_ms']) for l in lines):.3f} ms; "
      f"requests that found all connections busy: up to {max(float(l['queued_pct']) for l in lines):.2f} %")
PY
python3 - "$WORK" "$ROUNDS" "$DURATION" <<'PY'
import sys
work, rounds, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
waits = {name: " / ".join(open(f"{work}/{name}.{r}.wait").read().strip() for r in range(1, rounds + 1))
         for name in ("nginx-proxy_pass", "jwtgate-hs256")}
print(f"time each proxy was ready to run while CPU 0 ran another thread, per {duration} pace run, by round: "
      f"nginx proxy_pass {waits['nginx-proxy_pass']} ms, jwtgate HS256 {waits['jwtgate-hs256']} ms")
PY
p99_line "hey -c $CONNS (bursts of $CONNS)" "${HEY_ROUNDS[@]}"
fi

# Memory: 10 000 idle keep-alive connections (200 in the smoke run), both
# timeouts and max_connections raised.
ulimit -n "$(ulimit -Hn)"  # 10 000 connections per process need more than the default soft limit
IDLE_PORT=$(free_port)
render "$HERE/jwtgate.toml" "$WORK/idle.toml" "PORT=$IDLE_PORT" "NAME=idle" "KEY=secret = \"$SECRET\""
sed -i 's/^watch_config = false/watch_config = false\nmax_connections = 20000\nheader_read_timeout = "600s"\nidle_timeout = "600s"/' "$WORK/idle.toml"
grep -q '^idle_timeout = "600s"' "$WORK/idle.toml" ||
  { echo "run.sh: could not raise the timeouts in $WORK/idle.toml (no 'watch_config = false' line in jwtgate.toml?)" >&2; exit 1; }
taskset -c 0 "$JWTGATE" run -c "$WORK/idle.toml" > "$WORK/idle.out" 2>&1 &
IDLE_PID=$!; PIDS+=("$IDLE_PID")
wait_port "$IDLE_PORT"
taskset -c 1 python3 "$HERE/idle_conns.py" "$IDLE_PORT" "$HS_TOKEN" "$IDLE_PID" "$([ $SMOKE = 1 ] && echo 200 || echo 10000)"
