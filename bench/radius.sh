#!/usr/bin/env bash
# bench/radius.sh: Jeton's RADIUS Access-Requests next to FreeRADIUS, both holding the same 10,000 users,
# measured in ONE run on this machine with the same load client (the peers' anchorload: closed loop, C
# workers with one request outstanding each, PAP with a Message-Authenticator as the first attribute), the
# same concurrency and durations; then Jeton alone with bcrypt and argon2id passwords.
#
#   PEERS=/path/to/bench-peers bench/radius.sh   # the peers' folder after its ./setup.sh (freeradius, anchorload)
#
# Lines per mode and round: FreeRADIUS (its `files` users file: Cleartext-Password, client 127.0.0.1 with
# require_message_authenticator) and Jeton with the passwords stored in Casdoor's `plain` scheme and in its
# `salt` scheme (salted SHA-256). Every request carries the same attributes, a Class naming the
# organization included (FreeRADIUS ignores it; Jeton takes the organization from it). Then, once per mode,
# Jeton with bcrypt (cost 10) and argon2id (64 MiB, t=1, p=2) passwords: SLOW_C workers for SLOW_D s (these
# are bound by the hash; a few hundred requests give the rate), and what one hash check costs on one core
# (`radiusdata --time-hashes`), to say where the time goes.
# Each line: requests/s, p50/p99 latency, errors, and CPU per request of the server (user + kernel) and of
# the load client (on 2 cores they compete, so requests/s alone says little). Ratios use the median of the
# rounds; the spread is (max - min) / median over the rounds.
# Modes (MODES, default "shared pinned"): shared = server and load float over both cores; pinned = server
# on core 0, load on core 1. Env: C (workers, 64), W (warm-up s, 2), D (measured s, 10), ROUNDS (3),
# SLOW_C (16), SLOW_D (10), SLOW ("bcrypt argon2id"; "" for none), SLOW_USERS (200: users with such
# passwords; hashing them is what building the data dir takes longest at), JETON_BIN, RADIUSDATA_BIN,
# DATA (data dir, built once: $PEERS/run/jeton-radius), JPORT / JHTTP (Jeton's RADIUS and HTTP ports,
# 18121 / 18402), JETON_WRAP (a command to run jeton under, e.g.
# valgrind; then CPU figures are of the wrapper).
# Every server runs under `timeout` and is stopped on exit; loopback only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="${PEERS:-/work/shared/bench-peers}"
# shellcheck source=/dev/null
. "$PEERS/lib.sh"   # ANCHORS, RUN, start_bg, stop_bg, server_pid, wait_cmd
C="${C:-64}"; W="${W:-2}"; D="${D:-10}"; ROUNDS="${ROUNDS:-3}"
SLOW_C="${SLOW_C:-16}"; SLOW_D="${SLOW_D:-10}"; SLOW="${SLOW-bcrypt argon2id}"; SLOW_USERS="${SLOW_USERS:-200}"
MODES="${MODES:-shared pinned}"
BIN_DIR="${CARGO_TARGET_DIR:-$HERE/../target}/release"
JETON_BIN="${JETON_BIN:-$BIN_DIR/jeton}"
RADIUSDATA_BIN="${RADIUSDATA_BIN:-$BIN_DIR/radiusdata}"
DATA="${DATA:-$RUN/jeton-radius}"
read -r -a WRAP <<<"${JETON_WRAP:-}"
AL="$ANCHORS/target/release/anchorload"
SECRET=anchor-radius-secret          # the peers' FreeRADIUS client secret; Jeton gets the same
FR=127.0.0.1:18120                   # the peers' FreeRADIUS
JPORT="${JPORT:-18121}"; JHTTP="${JHTTP:-18402}"; JETON=127.0.0.1:$JPORT
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$HERE/results"; OUT="$HERE/results/radius-$STAMP.txt"
TMP="$(mktemp -d)"
for need in freeradius radclient taskset python3; do command -v "$need" >/dev/null || { echo "missing $need (run the peers' setup.sh)" >&2; exit 1; }; done
for f in "$JETON_BIN" "$RADIUSDATA_BIN" "$AL"; do
  [ -x "$f" ] || { echo "missing $f: cargo build --release -p jeton -p jeton-bench; the peers' setup.sh" >&2; exit 1; }
done

# Private copies: a build in a shared target dir could replace the binaries between the two modes.
cp "$JETON_BIN" "$TMP/jeton"; cp "$RADIUSDATA_BIN" "$TMP/radiusdata"; JETON_BIN="$TMP/jeton"; RADIUSDATA_BIN="$TMP/radiusdata"

cleanup() { "$ANCHORS/freeradius/stop.sh" || true; stop_bg jeton; rm -rf "$TMP"; }
trap cleanup EXIT
say() { echo "$*" | tee -a "$OUT"; }
HZ="$(getconf CLK_TCK)"
declare -A RUNS   # "MODE/name" -> space-separated requests/s of each round

# The data dir, built once; one that a former run left half-built, or built with other SLOW_USERS, is rebuilt.
data_dir() {
  if [ "$(cat "$DATA/.complete" 2>/dev/null)" != "slow-users $SLOW_USERS" ]; then
    rm -rf "$DATA"; mkdir -p "$(dirname "$DATA")"
    echo "building $DATA (once)..." >&2
    "$RADIUSDATA_BIN" --data-dir "$DATA" --slow-users "$SLOW_USERS" >&2
    echo "slow-users $SLOW_USERS" >"$DATA/.complete"
  fi
}

# One PAP Access-Request with a Message-Authenticator through FreeRADIUS' radclient: ready or not.
radius_ok() {  # SERVER CLASS
  printf 'User-Name=user00001,User-Password=secret00001,Class=%s,Message-Authenticator=0x00\n' "$2" |
    radclient -q -r 1 -t 1 "$1" auth "$SECRET"
}

start_jeton() {
  JETON_LOG=warn JETON_RADIUS_SECRET="$SECRET" start_bg jeton "$RUN/jeton-radius.log" "${WRAP[@]}" "$JETON_BIN" serve \
    --data-dir "$DATA" --http-addr "127.0.0.1:$JHTTP" --ldap-addr "" --radius-addr "$JETON" --radius-acct-addr ""
  wait_cmd 120 radius_ok "$JETON" radius-plain || { tail -5 "$RUN/jeton-radius.log" >&2; exit 1; }
}

# measure PIDNAME NAME [-c N] [-d S] ANCHORLOAD-ARGS...: anchorload warms up W s and measures D s (or the
# given ones); the server's CPU is read from /proc over the measured window. One line; requests/s kept in RUNS.
measure() {
  local who="$1" name="$2" c="$C" d="$D"; shift 2
  [ "${1:-}" = -c ] && { c="$2"; shift 2; }
  [ "${1:-}" = -d ] && { d="$2"; shift 2; }
  local spid; spid="$(server_pid "$who")"
  $LOADPIN "$AL" "$@" -c "$c" -d "$d" -w "$W" >"$TMP/al.out" 2>&1 &
  local lp=$!
  sleep "$W"
  # utime and stime (fields 14 and 15), in clock ticks.
  local p0 k0 t0; read -r p0 k0 < <(awk '{print $14, $15}' "/proc/$spid/stat"); t0="$(date +%s.%N)"
  wait "$lp" || true
  local p1 k1 t1; read -r p1 k1 < <(awk '{print $14, $15}' "/proc/$spid/stat"); t1="$(date +%s.%N)"
  local r; r="$(grep '^mode=' "$TMP/al.out")" || { say "$MODE $name: anchorload failed: $(tail -3 "$TMP/al.out")"; return; }
  local ok err rps p50_ms p99_ms cpu_s
  eval "$(echo "$r" | tr ' ' '\n' | grep -E '^(ok|err|rps|p50_ms|p99_ms|cpu_s)=' | tr '\n' ' ')"
  RUNS["$MODE/$name"]="${RUNS["$MODE/$name"]:-} $rps"
  say "$(awk -v m="$MODE" -v n="$name" -v r="$rps" -v a="$p50_ms" -v b="$p99_ms" -v e="$err" -v ok="$ok" \
    -v p0="$p0" -v p1="$p1" -v k0="$k0" -v k1="$k1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v lc="$cpu_s" -v d="$d" \
    'BEGIN{ u = (p1 - p0) / hz; k = (k1 - k0) / hz; s = u + k; per = (ok > 0 ? 1e6 * d / (t1 - t0) / ok : 0);
      printf "%-6s %-40s %8.1f req/s  p50 %7.3f ms  p99 %8.3f ms  err %d  server %7.1f us/op (user %6.1f + sys %4.1f; %.2f cores)  load %5.1f us/op  (%d ok)\n",
      m, n, r, a, b, e, s * per, u * per, k * per, s / (t1 - t0), (ok > 0 ? lc / ok * 1e6 : 0), ok}')"
}

# Median and spread ((max - min) / median) of a line's rounds.
stats() { echo "${RUNS[$1]:-}" | tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{ if (NR == 0) { print "0 0"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f %.0f\n", m, (m > 0 ? 100 * (v[NR] - v[1]) / m : 0) }'; }
ratio() {
  local a b sa sb; read -r a sa < <(stats "$1"); read -r b sb < <(stats "$2")
  awk -v a="$a" -v b="$b" -v sa="$sa" -v sb="$sb" 'BEGIN{ if (b > 0) printf "%.2fx (%d vs %d req/s median; spread %d%% / %d%%)", a / b, a, b, sa, sb; else printf "n/a" }'
}

say "date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
say "settings: $C workers, warm-up ${W}s, measured ${D}s, $ROUNDS rounds; slow schemes: $SLOW_C workers, ${SLOW_D}s; $("$JETON_BIN" --version 2>/dev/null); freeradius $(dpkg-query -W -f='${Version}' freeradius 2>/dev/null)"
data_dir
PAP=(radius-pap --secret "$SECRET" --timeout-ms 2000)
for MODE in $MODES; do
  if [ "$MODE" = pinned ]; then export ANCHOR_SERVER_CPUS=0; LOADPIN="taskset -c 1"; THREADS=1
  else unset ANCHOR_SERVER_CPUS; LOADPIN=""; THREADS="$(nproc)"; fi
  say "--- mode $MODE ---"
  "$ANCHORS/freeradius/start.sh" >/dev/null
  start_jeton
  for round in $(seq "$ROUNDS"); do
    say "round $round"
    measure radius "freeradius PAP Cleartext-Password" "${PAP[@]}" --threads "$THREADS" --server "$FR" --class radius-plain
    measure jeton "jeton PAP plain" "${PAP[@]}" --threads "$THREADS" --server "$JETON" --class radius-plain
    measure jeton "jeton PAP salt (salted SHA-256)" "${PAP[@]}" --threads "$THREADS" --server "$JETON" --class radius-salt
  done
  "$ANCHORS/freeradius/stop.sh"
  for scheme in $SLOW; do
    measure jeton "jeton PAP $scheme ($SLOW_C workers)" -c "$SLOW_C" -d "$SLOW_D" radius-pap --secret "$SECRET" \
      --timeout-ms 20000 --threads "$THREADS" --server "$JETON" --class "radius-$scheme" \
      --users "$SLOW_USERS"
  done
  stop_bg jeton
done
if [ -n "$SLOW" ]; then
  say "--- one password check on one core, $JETON_BIN's crate versions (radiusdata --time-hashes) ---"
  "$RADIUSDATA_BIN" --time-hashes | tee -a "$OUT"
fi

say "--- ratios (median req/s over median req/s, same mode, same run) ---"
for MODE in $MODES; do
  say "$MODE: PAP plain jeton/freeradius $(ratio "$MODE/jeton PAP plain" "$MODE/freeradius PAP Cleartext-Password") — target >= 1.5"
  say "$MODE: PAP salt jeton/freeradius $(ratio "$MODE/jeton PAP salt (salted SHA-256)" "$MODE/freeradius PAP Cleartext-Password") — target >= 1.5"
done
say "loadavg at the end: $(cut -d' ' -f1-3 /proc/loadavg); log: $OUT"
