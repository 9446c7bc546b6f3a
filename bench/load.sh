#!/usr/bin/env bash
# bench/load.sh: endpoint throughput of jeton next to the bare-hyper ceiling and node-oidc-provider, measured
# in ONE run on this machine with the same load tool (wrk), the same concurrency and the same durations.
#
#   PEERS=/path/to/bench-peers bench/load.sh      # the peers' folder after its ./setup.sh (wrk, ceiling, provider)
#
# Lines: ceiling hello / verify, jeton introspection (cache hit) / JWKS / client_credentials issuance (EdDSA),
# oidc-provider client_credentials / introspection (opaque token) / JWKS. Then the ratios against the targets.
# Modes (MODES, default "shared pinned"): shared = server and wrk float over both cores; pinned = server on
# core 0, wrk on core 1. Env: C (connections, 64), W (warm-up s, 2), D (measured s, 10), JETON_BIN,
# ONLY ("ceiling jeton oidc"). Every server runs under `timeout` and is stopped on exit; loopback only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="${PEERS:-/work/shared/bench-peers}"
# shellcheck source=/dev/null
. "$PEERS/lib.sh"   # ANCHORS, RUN, start_bg, stop_bg, server_pid, wait_tcp, wait_cmd
C="${C:-64}"; W="${W:-2}"; D="${D:-10}"
MODES="${MODES:-shared pinned}"
ONLY="${ONLY:-ceiling jeton oidc}"
JETON_BIN="${JETON_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/perf/jeton}"
LUA="$ANCHORS/tools/wrk/req.lua"
PORT=18400
ADMIN_ID=bench-admin-client; ADMIN_SECRET=bench-admin-secret-0123456789abcdef
# The measured application: created by start_jeton with tokenSigningMethod EdDSA (new applications and the
# admin application sign RS256 by default, ~20x slower to sign; README "Signing algorithms").
ID=bench-eddsa-client; SECRET=bench-eddsa-secret-0123456789abcdef
OIDC_CRED='anchor-client:anchor-client-secret-0123456789abcdef'
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$HERE/results"; OUT="$HERE/results/load-$STAMP.txt"
TMP="$(mktemp -d)"
for need in wrk curl python3 taskset; do command -v "$need" >/dev/null || { echo "missing $need (run the peers' setup.sh)" >&2; exit 1; }; done
[ -x "$JETON_BIN" ] || { echo "missing $JETON_BIN: cargo build --profile perf -p jeton" >&2; exit 1; }

cleanup() { for s in ceiling oidc jeton; do stop_bg "$s"; done; rm -rf "$TMP"; }
trap cleanup EXIT
say() { echo "$*" | tee -a "$OUT"; }
declare -A RPS

# measure NAME URL METHOD BODY BASIC(user:pass or empty): warm-up W s, then D s measured; one line.
measure() {
  local name="$1" url="$2" method="$3" body="$4" cred="$5" r
  export ANCHOR_METHOD="$method" ANCHOR_BODY="$body" ANCHOR_BASIC=""
  [ -n "$cred" ] && ANCHOR_BASIC="$(printf '%s' "$cred" | base64 -w0)"
  $LOADPIN wrk -t"$WT" -c"$C" -d"${W}s" --timeout 5s -s "$LUA" "$url" >/dev/null 2>&1 || true
  local p0 t0 t1 p1; p0="$(awk '{print $14+$15}' "/proc/$SPID/stat")"; t0="$(date +%s.%N)"
  $LOADPIN wrk -t"$WT" -c"$C" -d"${D}s" --timeout 5s -s "$LUA" "$url" >"$TMP/wrk.out" 2>&1
  t1="$(date +%s.%N)"; p1="$(awk '{print $14+$15}' "/proc/$SPID/stat")"
  r="$(grep '^WRKRESULT' "$TMP/wrk.out")" || { say "$MODE $name: wrk failed: $(tail -3 "$TMP/wrk.out")"; return; }
  local requests duration_us p50_us p90_us p99_us max_us non2xx connect read write timeout
  eval "$(echo "$r" | sed 's/^WRKRESULT //')"
  local rps; rps="$(awk -v n="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", n / (d / 1e6)}')"
  RPS["$MODE/$name"]="$rps"
  say "$(awk -v m="$MODE" -v n="$name" -v r="$rps" -v a="$p50_us" -v b="$p99_us" -v e="$((connect + read + write + timeout))" \
    -v x="$non2xx" -v p0="$p0" -v p1="$p1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%-6s %-40s %8d req/s  p50 %7.3f ms  p99 %7.3f ms  err %d non2xx %d  server cores %.2f\n", m, n, r, a/1000, b/1000, e, x, (p1-p0)/hz/(t1-t0)}')"
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

start_jeton() {
  rm -rf "$TMP/jeton-data"
  JETON_ADMIN_PASSWORD=bench-admin-pw JETON_ADMIN_CLIENT_ID="$ADMIN_ID" JETON_ADMIN_CLIENT_SECRET="$ADMIN_SECRET" JETON_LOG=warn \
    start_bg jeton "$RUN/jeton.log" "$JETON_BIN" serve --data-dir "$TMP/jeton-data" --http-addr "127.0.0.1:$PORT"
  wait_cmd 30 curl -sf "http://127.0.0.1:$PORT/api/health"
  SPID="$(server_pid jeton)"
  curl -sf -u "$ADMIN_ID:$ADMIN_SECRET" -H 'content-type: application/json' "http://127.0.0.1:$PORT/api/add-application" \
    -d "{\"owner\":\"admin\",\"name\":\"app-bench-eddsa\",\"organization\":\"built-in\",\"clientId\":\"$ID\",\"clientSecret\":\"$SECRET\",\"grantTypes\":[\"client_credentials\"],\"tokenSigningMethod\":\"EdDSA\",\"expireInHours\":1}" \
    | grep -q '"status":"ok"' || { echo "could not create the EdDSA application" >&2; exit 1; }
}

say "date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
say "settings: $C connections, warm-up ${W}s, measured ${D}s; jeton $("$JETON_BIN" --version 2>/dev/null)"
for MODE in $MODES; do
  if [ "$MODE" = pinned ]; then export ANCHOR_SERVER_CPUS=0; LOADPIN="taskset -c 1"; WT=1
  else unset ANCHOR_SERVER_CPUS; LOADPIN=""; WT="$(nproc)"; fi
  say "--- mode $MODE ---"
  if [[ " $ONLY " == *" ceiling "* ]]; then
    "$ANCHORS/ceiling/start.sh" >/dev/null; SPID="$(server_pid ceiling)"
    TOK="$("$ANCHORS/target/release/ceiling" mint)"
    measure "ceiling hyper hello" http://127.0.0.1:18080/hello POST "token=$TOK" "$OIDC_CRED"
    measure "ceiling hyper + Ed25519 verify" http://127.0.0.1:18080/verify POST "token=$TOK" "$OIDC_CRED"
    "$ANCHORS/ceiling/stop.sh" >/dev/null
  fi
  if [[ " $ONLY " == *" jeton "* ]]; then
    start_jeton
    AT="$(curl -sf -u "$ID:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$PORT/oauth/token" | json_field access_token)"
    measure "jeton introspect (cache hit)" "http://127.0.0.1:$PORT/oauth/introspect" POST "token=$AT&token_type_hint=access_token" "$ID:$SECRET"
    measure "jeton JWKS" "http://127.0.0.1:$PORT/.well-known/jwks" GET "" ""
    measure "jeton token client_credentials EdDSA" "http://127.0.0.1:$PORT/oauth/token" POST "grant_type=client_credentials" "$ID:$SECRET"
    stop_bg jeton
  fi
  if [[ " $ONLY " == *" ceiling "* ]]; then
    # The ceiling again, after jeton: this VM drifts by 10-20 % within minutes, so the ratios use the mean
    # of the ceiling measured before and after.
    "$ANCHORS/ceiling/start.sh" >/dev/null; SPID="$(server_pid ceiling)"
    measure "ceiling hyper hello (again)" http://127.0.0.1:18080/hello POST "token=$TOK" "$OIDC_CRED"
    "$ANCHORS/ceiling/stop.sh" >/dev/null
    RPS["$MODE/ceiling"]="$(awk -v a="${RPS[$MODE/ceiling hyper hello]}" -v b="${RPS[$MODE/ceiling hyper hello (again)]}" 'BEGIN{printf "%.0f", (a + b) / 2}')"
  fi
  if [[ " $ONLY " == *" oidc "* ]]; then
    "$ANCHORS/oidc-provider/start.sh" >/dev/null; SPID="$(server_pid oidc)"
    OPQ="$("$ANCHORS/oidc-provider/token.sh" opaque)"
    measure "oidc-provider introspect (opaque)" http://127.0.0.1:3000/token/introspection POST "token=$OPQ&token_type_hint=access_token" "$OIDC_CRED"
    measure "oidc-provider JWKS" http://127.0.0.1:3000/jwks GET "" ""
    measure "oidc-provider token client_credentials" http://127.0.0.1:3000/token POST "grant_type=client_credentials&scope=api%3Aread" "$OIDC_CRED"
    "$ANCHORS/oidc-provider/stop.sh" >/dev/null
  fi
done

ratio() { awk -v a="${RPS[$1]:-0}" -v b="${RPS[$2]:-0}" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
say "--- ratios (req/s over req/s, same mode, same run; ceiling = mean of its two measurements) ---"
for MODE in $MODES; do
  say "$MODE: introspect/ceiling $(ratio "$MODE/jeton introspect (cache hit)" "$MODE/ceiling") (target >= 0.8)," \
    "JWKS/ceiling $(ratio "$MODE/jeton JWKS" "$MODE/ceiling") (>= 0.9)," \
    "issuance/ceiling $(ratio "$MODE/jeton token client_credentials EdDSA" "$MODE/ceiling") (>= 0.4)"
  say "$MODE: vs oidc-provider: introspect $(ratio "$MODE/jeton introspect (cache hit)" "$MODE/oidc-provider introspect (opaque)")x," \
    "JWKS $(ratio "$MODE/jeton JWKS" "$MODE/oidc-provider JWKS")x," \
    "issuance $(ratio "$MODE/jeton token client_credentials EdDSA" "$MODE/oidc-provider token client_credentials")x (target >= 10x each)"
done
say "log: $OUT"
