# Shared by run.sh and instructions.sh (sourced, after HERE and ROOT are set):
# the jwtgate build, a work directory, background processes killed on exit,
# ports, config templates and the one shared upstream.

# build_jwtgate PROFILE WORKDIR [CARGO_TARGET...]: builds jwtgate (release or
# dev), and any further targets (`--example pace`), and sets JWTGATE to the
# binary, BUILT to the profile's output directory and WORK to a fresh
# $TARGET_DIR/WORKDIR.
build_jwtgate() {
  local profile=$1 workdir=$2; shift 2
  cd "$ROOT"
  cargo build --locked --bin jwtgate "$@" $([ "$profile" = release ] && echo --release) >&2
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BUILT="$TARGET_DIR/$([ "$profile" = release ] && echo release || echo debug)"
  JWTGATE="$BUILT/jwtgate"
  WORK="$TARGET_DIR/$workdir"
  rm -rf "$WORK" && mkdir -p "$WORK"
}

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT [TRIES]: 50 ms apart; a process under valgrind needs more.
wait_port() {
  for _ in $(seq 1 "${2:-200}"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "$(basename "$0"): nothing listens on port $1" >&2; return 1
}
render() { # render TEMPLATE OUT KEY=VALUE...
  local tpl=$1 out=$2; shift 2
  local text; text=$(cat "$tpl")
  text=${text//\{\{WORK\}\}/$WORK}; text=${text//\{\{HERE\}\}/$HERE}; text=${text//\{\{UPSTREAM_PORT\}\}/$UPSTREAM_PORT}
  for kv in "$@"; do text=${text//\{\{${kv%%=*}\}\}/${kv#*=}}; done
  printf '%s\n' "$text" > "$out"
}

# The shared upstream: nginx answering `return 200`, pinned to CPU 1.
start_upstream() {
  UPSTREAM_PORT=$(free_port)
  render "$HERE/nginx-upstream.conf" "$WORK/upstream.conf"
  taskset -c 1 nginx -c "$WORK/upstream.conf" -p "$WORK" -e "$WORK/upstream-error.log" &
  PIDS+=($!)
  wait_port "$UPSTREAM_PORT"
}

# need PKG...: installs the missing Debian packages (as root), or stops with
# their names. A package is present when its command is (llvm-N: its
# llvm-profdata-N; procps: pgrep; libnginx-mod-http-js: nginx's module file).
# nginx and haproxy live in /usr/sbin, which a user's PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
need() {
  local missing=() pkg
  for pkg in "$@"; do
    case $pkg in
      libnginx-mod-http-js) [ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing+=("$pkg") ;;
      llvm-[0-9]*) command -v "llvm-profdata-${pkg#llvm-}" >/dev/null || missing+=("$pkg") ;;
      procps) command -v pgrep >/dev/null || missing+=("$pkg") ;;
      *) command -v "$pkg" >/dev/null || missing+=("$pkg") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "$(basename "$0"): please install: ${missing[*]}" >&2
    exit 1
  fi
}

# logins PORT N FILE: N sessions' refresh tokens from real logins on the
# jwtgate at PORT (benches/compare/jwtgate-refresh.toml), one per line.
logins() {
  : > "$3"
  for _ in $(seq 1 "$2"); do
    curl -s -o /dev/null -D - -X POST "http://127.0.0.1:$1/login" |
      sed -n 's/^[Ss]et-[Cc]ookie: refresh_token_cookie=\([^;]*\).*/\1/p' >> "$3"
  done
  [ "$(wc -l < "$3")" -eq "$2" ] || { echo "$(basename "$0"): login did not set refresh cookies" >&2; exit 1; }
}
