#!/usr/bin/env bash
# bench/ldap.sh: Jeton's LDAP binds and searches next to OpenLDAP slapd, both holding the same 10,000 users,
# measured in ONE run on this machine with the same load client (the peers' anchorload: closed loop, one
# connection per worker), the same concurrency and durations; then one user among 100 and among 1,000,000.
#
#   PEERS=/path/to/bench-peers bench/ldap.sh     # the peers' folder after its ./setup.sh (slapd, anchorload)
#
# Lines per mode and round: search (uid=userNNNNN) in the subtree returning uid, cn, mail, as a service
# account (slapd: cn=svc; Jeton: the organization's admin) — simple bind with a salted hash (slapd {SSHA} =
# salted SHA-1; Jeton: Casdoor's `salt` = salted SHA-256) and with a cleartext password, each rebinding on one
# connection — and a new connection per bind (connect, bind, unbind). Then Jeton alone: search and bind in
# an organization of 100 users and in one of 1,000,000 (all of them asked for in turn, and 10,000 of them).
# Each line: ops/s, p50/p99 latency, errors, and CPU per operation of the server (user + kernel) and of the load client
# (on 2 cores they compete, so ops/s alone says little). Ratios use the median of the rounds; the spread is
# (max - min) / median over the rounds.
# Modes (MODES, default "shared pinned"): shared = server and load float over both cores; pinned = server
# on core 0, load on core 1. Env: C (workers, 64), W (warm-up s, 2), D (measured s, 10), ROUNDS (3),
# JETON_BIN, LDAPDATA_BIN, DATA (data dirs, built once: $PEERS/run/jeton-ldap), ONLY ("10k 1m").
# Every server runs under `timeout` and is stopped on exit; loopback only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="${PEERS:-/work/shared/bench-peers}"
# shellcheck source=/dev/null
. "$PEERS/lib.sh"   # ANCHORS, RUN, start_bg, stop_bg, server_pid, wait_tcp, wait_cmd
C="${C:-64}"; W="${W:-2}"; D="${D:-10}"; ROUNDS="${ROUNDS:-3}"
MODES="${MODES:-shared pinned}"
ONLY="${ONLY:-10k 1m}"
BIN_DIR="${CARGO_TARGET_DIR:-$HERE/../target}/perf"
JETON_BIN="${JETON_BIN:-$BIN_DIR/jeton}"
LDAPDATA_BIN="${LDAPDATA_BIN:-$BIN_DIR/ldapdata}"
DATA="${DATA:-$RUN/jeton-ldap}"
AL="$ANCHORS/target/release/anchorload"
SLAPD=ldap://127.0.0.1:3389
JPORT=18389; JHTTP=18401; JETON=ldap://127.0.0.1:$JPORT
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$HERE/results"; OUT="$HERE/results/ldap-$STAMP.txt"
TMP="$(mktemp -d)"
for need in slapd ldapwhoami taskset python3; do command -v "$need" >/dev/null || { echo "missing $need (run the peers' setup.sh)" >&2; exit 1; }; done
for f in "$JETON_BIN" "$LDAPDATA_BIN" "$AL"; do
  [ -x "$f" ] || { echo "missing $f: cargo build --profile perf -p jeton -p jeton-bench; the peers' setup.sh" >&2; exit 1; }
done

cleanup() { stop_bg slapd; stop_bg jeton; rm -rf "$TMP"; }
trap cleanup EXIT
say() { echo "$*" | tee -a "$OUT"; }
HZ="$(getconf CLK_TCK)"
declare -A RUNS   # "MODE/name" -> space-separated ops/s of each round

# Builds a data dir once (ldapdata --set SET); a dir that a former run left half-built is rebuilt.
data_dir() {
  local set="$1" dir="$DATA/$1"
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"; mkdir -p "$DATA"
    echo "building $dir (once)..." >&2
    "$LDAPDATA_BIN" --data-dir "$dir" --set "$set" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

start_jeton() {
  local dir="$1"
  JETON_LOG=warn start_bg jeton "$RUN/jeton-ldap.log" "$JETON_BIN" serve --data-dir "$dir" \
    --http-addr "127.0.0.1:$JHTTP" --ldap-addr "127.0.0.1:$JPORT"
  wait_cmd 60 ldapwhoami -x -H "$JETON" -D "$2" -w ldapadmin-secret
}

# measure PIDNAME NAME ANCHORLOAD-ARGS...: anchorload warms up W s and measures D s; the server's CPU is
# read from /proc over the measured window. One line; ops/s kept in RUNS.
measure() {
  local who="$1" name="$2"; shift 2
  local spid; spid="$(server_pid "$who")"
  $LOADPIN "$AL" "$@" -c "$C" -d "$D" -w "$W" >"$TMP/al.out" 2>&1 &
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
    -v p0="$p0" -v p1="$p1" -v k0="$k0" -v k1="$k1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v lc="$cpu_s" -v d="$D" \
    'BEGIN{ u = (p1 - p0) / hz; k = (k1 - k0) / hz; s = u + k; per = (ok > 0 ? 1e6 * d / (t1 - t0) / ok : 0);
      printf "%-6s %-44s %8d op/s  p50 %6.3f ms  p99 %6.3f ms  err %d  server %5.1f us/op (user %4.1f + sys %4.1f; %.2f cores)  load %5.1f us/op\n",
      m, n, r, a, b, e, s * per, u * per, k * per, s / (t1 - t0), (ok > 0 ? lc / ok * 1e6 : 0)}')"
}

# Median and spread ((max - min) / median) of a line's rounds.
stats() { echo "${RUNS[$1]:-}" | tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{ if (NR == 0) { print "0 0"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f %.0f\n", m, (m > 0 ? 100 * (v[NR] - v[1]) / m : 0) }'; }
ratio() {
  local a b; read -r a sa < <(stats "$1"); read -r b sb < <(stats "$2")
  awk -v a="$a" -v b="$b" -v sa="$sa" -v sb="$sb" 'BEGIN{ if (b > 0) printf "%.2fx (%d vs %d op/s median; spread %d%% / %d%%)", a / b, a, b, sa, sb; else printf "n/a" }'
}

say "date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
say "settings: $C workers, warm-up ${W}s, measured ${D}s, $ROUNDS rounds; $("$JETON_BIN" --version 2>/dev/null); $(slapd -VV 2>&1 | head -1 | sed 's/^@(#) \$//; s/ (.*//')"
[[ " $ONLY " == *" 10k "* ]] && D10K="$(data_dir 10k)"
[[ " $ONLY " == *" 1m "* ]] && D1M="$(data_dir 1m)"
[[ " $ONLY " == *" 10k "* ]] && "$ANCHORS/slapd/setup.sh" >/dev/null
for MODE in $MODES; do
  if [ "$MODE" = pinned ]; then export ANCHOR_SERVER_CPUS=0; LOADPIN="taskset -c 1"; THREADS=1
  else unset ANCHOR_SERVER_CPUS; LOADPIN=""; THREADS="$(nproc)"; fi
  say "--- mode $MODE ---"
  if [[ " $ONLY " == *" 10k "* ]]; then
    "$ANCHORS/slapd/start.sh" >/dev/null
    start_jeton "$D10K" uid=ldapadmin,ou=bench
    for round in $(seq "$ROUNDS"); do
      say "round $round"
      measure slapd "slapd search (uid=..) sub, 3 attrs" ldap-search --threads "$THREADS" --url "$SLAPD" --base ou=people,dc=anchor,dc=local \
        --svc-dn cn=svc,dc=anchor,dc=local --svc-pw svc-secret
      measure jeton "jeton search (uid=..) sub, 3 attrs" ldap-search --threads "$THREADS" --url "$JETON" --base ou=bench \
        --svc-dn uid=ldapadmin,ou=bench --svc-pw ldapadmin-secret
      measure slapd "slapd bind {SSHA} (rebind on conn)" ldap-bind --threads "$THREADS" --url "$SLAPD" --base ou=people,dc=anchor,dc=local
      measure jeton "jeton bind salt (rebind on conn)" ldap-bind --threads "$THREADS" --url "$JETON" --base ou=bench
      measure slapd "slapd bind cleartext (rebind on conn)" ldap-bind --threads "$THREADS" --url "$SLAPD" --base ou=plain,dc=anchor,dc=local
      measure jeton "jeton bind plain (rebind on conn)" ldap-bind --threads "$THREADS" --url "$JETON" --base ou=bench-plain
      measure slapd "slapd connect+bind{SSHA}+unbind" ldap-bind --threads "$THREADS" --url "$SLAPD" --base ou=people,dc=anchor,dc=local --reconnect
      measure jeton "jeton connect+bind salt+unbind" ldap-bind --threads "$THREADS" --url "$JETON" --base ou=bench --reconnect
    done
    stop_bg jeton; "$ANCHORS/slapd/stop.sh" >/dev/null
  fi
  if [[ " $ONLY " == *" 1m "* ]]; then
    start_jeton "$D1M" uid=ldapadmin,ou=small
    for round in $(seq "$ROUNDS"); do
      say "round $round"
      for org in small big; do
        n=100; [ "$org" = big ] && n=1000000
        measure jeton "jeton search 1 of $n" ldap-search --threads "$THREADS" --url "$JETON" --base "ou=$org" --users "$n" \
          --user-fmt 'user{:07}' --svc-dn "uid=ldapadmin,ou=$org" --svc-pw ldapadmin-secret
        measure jeton "jeton bind salt 1 of $n" ldap-bind --threads "$THREADS" --url "$JETON" --base "ou=$org" --users "$n" \
          --user-fmt 'user{:07}' --pass-fmt 'secret{:07}'
      done
      # The same million, looking up only 10,000 of them: what the index costs, apart from the cost of
      # reaching a million records that the storage cache (64 MiB) cannot all hold.
      measure jeton "jeton search 1 of 1000000 (10k of them asked)" ldap-search --threads "$THREADS" --url "$JETON" --base ou=big \
        --users 10000 --user-fmt 'user{:07}' --svc-dn uid=ldapadmin,ou=big --svc-pw ldapadmin-secret
      measure jeton "jeton bind salt 1 of 1000000 (10k of them asked)" ldap-bind --threads "$THREADS" --url "$JETON" --base ou=big \
        --users 10000 --user-fmt 'user{:07}' --pass-fmt 'secret{:07}'
    done
    stop_bg jeton
  fi
done

say "--- ratios (median op/s over median op/s, same mode, same run) ---"
for MODE in $MODES; do
  if [[ " $ONLY " == *" 10k "* ]]; then
    say "$MODE: search jeton/slapd $(ratio "$MODE/jeton search (uid=..) sub, 3 attrs" "$MODE/slapd search (uid=..) sub, 3 attrs") — target >= 1.5"
    say "$MODE: bind salted jeton/slapd $(ratio "$MODE/jeton bind salt (rebind on conn)" "$MODE/slapd bind {SSHA} (rebind on conn)") — target >= 1.5"
    say "$MODE: bind cleartext jeton/slapd $(ratio "$MODE/jeton bind plain (rebind on conn)" "$MODE/slapd bind cleartext (rebind on conn)")"
    say "$MODE: connect+bind+unbind jeton/slapd $(ratio "$MODE/jeton connect+bind salt+unbind" "$MODE/slapd connect+bind{SSHA}+unbind")"
  fi
  if [[ " $ONLY " == *" 1m "* ]]; then
    say "$MODE: search 1 of 1,000,000 over 1 of 100 $(ratio "$MODE/jeton search 1 of 1000000" "$MODE/jeton search 1 of 100") — target ~1"
    say "$MODE: bind 1 of 1,000,000 over 1 of 100 $(ratio "$MODE/jeton bind salt 1 of 1000000" "$MODE/jeton bind salt 1 of 100")"
    say "$MODE: search 1 of 1,000,000 (10k of them asked) over 1 of 100 $(ratio "$MODE/jeton search 1 of 1000000 (10k of them asked)" "$MODE/jeton search 1 of 100")"
    say "$MODE: bind 1 of 1,000,000 (10k of them asked) over 1 of 100 $(ratio "$MODE/jeton bind salt 1 of 1000000 (10k of them asked)" "$MODE/jeton bind salt 1 of 100")"
  fi
done
say "log: $OUT"
