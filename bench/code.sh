#!/usr/bin/env bash
# bench/code.sh: the OAuth 2 authorization code flow, Jeton next to node-oidc-provider, measured in ONE run on
# this machine with the same load client (codeload, src/bin/codeload.rs), the same concurrency and durations.
#
#   PEERS=/path/to/bench-peers bench/code.sh     # the peers' folder with oidc-provider/node_modules (npm ci)
#
# Lines per mode and round (the two servers take turns going first, round by round):
#   - code redemption: codes minted first (not measured: sign in, then the authorization request again within
#     the session, PER_SESSION codes per sign-in), then redeemed in a closed loop: POST the token endpoint with
#     grant_type=authorization_code, code, redirect_uri, code_verifier (PKCE S256) and client_secret_basic;
#     a success is a 200 with an ID token signed ALG (RS256 by default, as Jeton's applications sign).
#   - whole sign-ins: each with a fresh cookie jar, authorization request, login page, POST of the login form
#     (user NNNNN, password in the SCHEME scheme: salt = Casdoor's salted SHA-256, or plain), the
#     authorization request again, the code, its redemption.
# Jeton: a private copy of JETON_BIN on a fresh data dir with the embedded defaults, an organization whose
# users' passwords are stored in SCHEME, USERS users (user00001/secret00001, ...) and a web application
# (authorization_code, one redirect URI, ALG), all through the admin API. node-oidc-provider: the peers'
# package with bench/oidc-code/server.mjs (the same client, redirect URI, users, scheme and ID token alg;
# its login form is ours, the provider ships none; codes live 600 s; its in-memory store grown past the
# 1,000 entries it keeps by default).
# Each line: operations/s, p50/p99 latency, errors, and CPU per operation of the server (user + kernel, all
# threads, read from /proc at the window's ends by codeload) and of the load client; "other" is the busy CPU
# of everything else (should be ~0: a line with more than OTHER_MAX cores is measured again, RETRIES times).
# Before each line the machine must be idle (< QUIET_CORES busy cores, waiting up to QUIET_MAX_S).
# Codes: CODES are minted for a server's first redemption line; after it, enough for its measured rate over
# W + D seconds (x1.3), within what can be minted in CODE_AGE_MAX - W - D seconds (Jeton's codes live 60 s;
# the oldest code must still be alive at the end). If the codes run out early the window ends there; the
# line is measured again with more codes when more can be minted, else it says so. Ratios use the median of the rounds; the spread is (max - min) / median over the rounds.
# Modes (MODES, default "shared pinned"): shared = servers and load float over both cores; pinned = server
# on core 0, load on core 1. Env: C (connections, 64), SIGNIN_C (C), W (warm-up s, 2), D (measured s, 10),
# ROUNDS (3), ALG (RS256|EdDSA), SCHEME (salt|plain), USERS (100), CODES (20000), CODES_MAX (400000),
# CODE_AGE_MAX (50), PER_SESSION (10), MINT_C (16), ONLY ("redeem signin"), SERVERS ("jeton oidc"; one alone),
# JETON_BIN, CODELOAD_BIN, JPORT (18403), JRAFT (18404), OPORT (3100), QUIET_MAX_S (30), QUIET_CORES (0.15),
# OTHER_MAX (0.15), RETRIES (1), SERVER_MAX_S (3600: each server's safety-net timeout).
# Every server runs under `timeout` and is stopped on exit; loopback only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="${PEERS:-/work/shared/bench-peers}"
# shellcheck source=/dev/null
. "$PEERS/lib.sh"   # ANCHORS, RUN, start_bg, stop_bg, server_pid, wait_cmd
# The servers' safety-net timeout (lib.sh: 900 s) must outlast a mode, whose lines wait for an idle machine
# and are measured again when disturbed: an hour unless set.
export ANCHOR_SERVER_MAX_S="${SERVER_MAX_S:-3600}"   # read by start_bg
C="${C:-64}"; SIGNIN_C="${SIGNIN_C:-$C}"; W="${W:-2}"; D="${D:-10}"; ROUNDS="${ROUNDS:-3}"
ALG="${ALG:-RS256}"; SCHEME="${SCHEME:-salt}"; USERS="${USERS:-100}"
CODES="${CODES:-20000}"; CODES_MAX="${CODES_MAX:-400000}"; CODE_AGE_MAX="${CODE_AGE_MAX:-50}"
PER_SESSION="${PER_SESSION:-10}"; MINT_C="${MINT_C:-16}"
MODES="${MODES:-shared pinned}"; ONLY="${ONLY:-redeem signin}"; SERVERS="${SERVERS:-jeton oidc}"
BIN_DIR="${CARGO_TARGET_DIR:-$HERE/../target}/release"
JETON_BIN="${JETON_BIN:-$BIN_DIR/jeton}"
CODELOAD_BIN="${CODELOAD_BIN:-$BIN_DIR/codeload}"
JPORT="${JPORT:-18403}"; JRAFT="${JRAFT:-18404}"; OPORT="${OPORT:-3100}"
JETON="http://127.0.0.1:$JPORT"; OIDC="http://127.0.0.1:$OPORT"
ADMIN_ID=bench-admin-client; ADMIN_SECRET=bench-admin-secret-0123456789abcdef
# The measured client, the same at both servers (bench/oidc-code/server.mjs has it built in).
CLIENT_ID=bench-code-client; CLIENT_SECRET=bench-code-secret-0123456789abcdef; REDIRECT=http://127.0.0.1:9/cb
ORG=bench-code
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$HERE/results"; OUT="$HERE/results/code-$STAMP.txt"
TMP="$(mktemp -d)"
for need in node curl taskset python3 getconf; do command -v "$need" >/dev/null || { echo "missing $need" >&2; exit 1; }; done
has() { [[ " $SERVERS " == *" $1 "* ]]; }
for f in "$CODELOAD_BIN" "$(has jeton && echo "$JETON_BIN")"; do
  [ -z "$f" ] || [ -x "$f" ] || { echo "missing $f: cargo build --release -p jeton -p jeton-bench (or set JETON_BIN / CODELOAD_BIN)" >&2; exit 1; }
done
if has oidc && [ ! -d "$PEERS/oidc-provider/node_modules/oidc-provider" ]; then
  echo "missing $PEERS/oidc-provider/node_modules: (cd $PEERS/oidc-provider && npm ci), or PEERS=<a set-up copy>" >&2; exit 1
fi
case "$ALG" in RS256|EdDSA) ;; *) echo "ALG must be RS256 or EdDSA" >&2; exit 1 ;; esac
case "$SCHEME" in salt|plain) ;; *) echo "SCHEME must be salt or plain" >&2; exit 1 ;; esac

# Private copies: a build in a shared target dir could replace the binaries between the two modes.
if has jeton; then cp "$JETON_BIN" "$TMP/jeton"; JETON_BIN="$TMP/jeton"; fi
cp "$CODELOAD_BIN" "$TMP/codeload"; CODELOAD_BIN="$TMP/codeload"
# The peer's server next to a link to the peers' node_modules (ESM resolves bare imports from the file's folder).
mkdir -p "$TMP/oidc-code"; cp "$HERE/oidc-code/server.mjs" "$TMP/oidc-code/"
ln -s "$PEERS/oidc-provider/node_modules" "$TMP/oidc-code/node_modules"

cleanup() { stop_bg jeton-code; stop_bg oidc-code; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "$*" | tee -a "$OUT"; }
die() { say "ERROR: $*"; exit 1; }
declare -A RATES CPU NEED   # "MODE/name" -> per-round ops/s, per-round server us/op; server -> codes to mint

# Per server: how codeload reaches it and its pid name in $RUN.
target_args() {
  case "$1" in
    jeton) echo "--base $JETON --authorize-path /oauth/authorize --token-path /oauth/token" ;;
    oidc) echo "--base $OIDC --authorize-path /auth --token-path /token" ;;
  esac
}
pid_name() { case "$1" in jeton) echo jeton-code ;; oidc) echo oidc-code ;; esac; }
label() { case "$1" in jeton) echo jeton ;; oidc) echo oidc-provider ;; esac; }

admin() {  # API JSON: one admin API call that must answer status ok
  local r
  r="$(curl -s -u "$ADMIN_ID:$ADMIN_SECRET" -H 'content-type: application/json' "$JETON/api/$1" -d "$2")" || true
  [[ "$r" == *'"status":"ok"'* ]] || die "admin $1 failed: ${r:0:300}"
}

start_jeton() {
  rm -rf "$TMP/jeton-data"
  JETON_ADMIN_PASSWORD=bench-admin-pw JETON_ADMIN_CLIENT_ID="$ADMIN_ID" JETON_ADMIN_CLIENT_SECRET="$ADMIN_SECRET" JETON_LOG=warn \
    start_bg jeton-code "$RUN/jeton-code.log" "$JETON_BIN" serve --data-dir "$TMP/jeton-data" \
    --http-addr "127.0.0.1:$JPORT" --raft-addr "127.0.0.1:$JRAFT" --issuer "$JETON" \
    --ldap-addr "" --radius-addr "" --radius-acct-addr ""
  wait_cmd 60 curl -sf "$JETON/api/health" || { tail -5 "$RUN/jeton-code.log" >&2; die "jeton did not start"; }
  admin add-organization "{\"owner\":\"admin\",\"name\":\"$ORG\",\"passwordType\":\"$SCHEME\"}"
  admin add-application "{\"owner\":\"admin\",\"name\":\"app-bench-code\",\"organization\":\"$ORG\",\"clientId\":\"$CLIENT_ID\",\"clientSecret\":\"$CLIENT_SECRET\",\"redirectUris\":[\"$REDIRECT\"],\"grantTypes\":[\"authorization_code\"],\"tokenSigningMethod\":\"$ALG\",\"expireInHours\":1}"
  local n user
  for n in $(seq "$USERS"); do
    user="$(printf 'user%05d' "$n")"
    # salt: a plaintext password is hashed with the organization's scheme; plain: stored as given.
    if [ "$SCHEME" = plain ]; then
      admin add-user "{\"owner\":\"$ORG\",\"name\":\"$user\",\"password\":\"$(printf 'secret%05d' "$n")\",\"passwordType\":\"plain\"}"
    else
      admin add-user "{\"owner\":\"$ORG\",\"name\":\"$user\",\"password\":\"$(printf 'secret%05d' "$n")\"}"
    fi
  done
  # The authorization endpoint must exist before anything is measured (issue 14 brings it).
  local status
  status="$(curl -s -o "$TMP/authorize.html" -w '%{http_code}' "$JETON/oauth/authorize?response_type=code&client_id=$CLIENT_ID&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&state=probe&nonce=probe&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")" || true
  case "$status" in
    200|302|303) ;;
    404) die "$JETON/oauth/authorize answers 404: this jeton build has no authorization code flow (issue 14); build one that has" ;;
    *) die "$JETON/oauth/authorize answers $status: $(head -c 300 "$TMP/authorize.html")" ;;
  esac
  probe jeton
}

# probe WHO: a few whole sign-ins, code redemption included, so that a broken flow stops the run here with
# its reason (codeload's failures on stderr), not as lines of errors.
probe() {
  local base; read -r -a base <<<"$(target_args "$1")"
  "$CODELOAD_BIN" signin "${base[@]}" --alg "$ALG" --users "$USERS" -c 1 -w 0 -d 2 >/dev/null ||
    die "a whole sign-in at $(label "$1") failed (codeload's failures above)"
}

start_peer() {
  NODE_ENV=production BENCH_OIDC_PORT="$OPORT" BENCH_OIDC_ALG="$ALG" BENCH_OIDC_SCHEME="$SCHEME" BENCH_OIDC_USERS="$USERS" \
    start_bg oidc-code "$RUN/oidc-code.log" node "$TMP/oidc-code/server.mjs"
  wait_cmd 30 curl -sf "$OIDC/.well-known/openid-configuration" || { tail -5 "$RUN/oidc-code.log" >&2; die "oidc-provider did not start"; }
  probe oidc
}

# /proc/stat -> "busy total" ticks of all CPUs
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# wait_quiet: wait (up to QUIET_MAX_S) until fewer than QUIET_CORES cores are busy over 0.5 s -> QUIET
wait_quiet() {
  local t=0 a b c d
  while :; do
    read -r a b < <(sys_ticks); sleep 0.5; read -r c d < <(sys_ticks)
    QUIET="$(awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v n="$(nproc --all)" 'BEGIN{printf "%.2f", (d > b) ? (c - a) / (d - b) * n : 0}')"
    awk -v x="$QUIET" -v l="${QUIET_CORES:-0.15}" 'BEGIN{exit !(x <= l)}' && return 0
    t=$((t + 1)); [ "$t" -ge $(("${QUIET_MAX_S:-30}" * 2)) ] && return 1
  done
}

# A summary field of codeload's line: field NAME LINE
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# once WHO KIND: one measurement (mint first for redeem) -> LINE (codeload's summary), NOTE; redeem also
# MINTED, MINT_SECS, MINT_RATE
once() {
  local who="$1" kind="$2" spid base args note=""
  spid="$(server_pid "$(pid_name "$who")")" || true
  if [ -z "$spid" ] || [ ! -d "/proc/$spid" ]; then
    die "$(label "$who") is not running any more (see $RUN/$(pid_name "$who").log)"
  fi
  read -r -a base <<<"$(target_args "$who")"
  base+=(--alg "$ALG" --users "$USERS")
  args=("${base[@]}" --server-pid "$spid" -w "$W" -d "$D")
  if [ "$kind" = redeem ]; then
    local n="${NEED[$who]:-$CODES}" m
    m="$("$CODELOAD_BIN" mint "${base[@]}" -n "$n" -c "$MINT_C" --per-session "$PER_SESSION" --out "$TMP/codes.txt")" ||
      die "minting $n codes at $(label "$who") failed"
    MINT_SECS="$(field secs "$m")"; MINT_RATE="$(field codes_per_s "$m")"; MINTED="$n"
    note=" [$n codes minted in ${MINT_SECS}s]"
    wait_quiet || note="$note [not idle before: $QUIET cores]"
    LINE="$($LOADPIN "$CODELOAD_BIN" redeem "${args[@]}" -c "$C" --threads "$THREADS" --codes "$TMP/codes.txt" 2>"$TMP/err.txt")" || true
  else
    wait_quiet || note=" [not idle before: $QUIET cores]"
    LINE="$($LOADPIN "$CODELOAD_BIN" signin "${args[@]}" -c "$SIGNIN_C" --threads "$THREADS" 2>"$TMP/err.txt")" || true
  fi
  [ -s "$TMP/err.txt" ] && note="$note {$(head -3 "$TMP/err.txt" | tr '\n' ';')}"
  NOTE="$note"
}

# need_codes WHO: after a redemption line, the codes its next one needs: its rate over W + D seconds (x1.3;
# never fewer than before: a line slowed down by foreign load must not starve the next), but no more than
# can be minted (at this line's minting rate) while the oldest code stays alive.
need_codes() {
  NEED[$1]="$(awk -v r="$(field rps "$LINE")" -v w="$W" -v d="$D" -v c="$C" -v mr="$MINT_RATE" -v age="$CODE_AGE_MAX" \
    -v prev="${NEED[$1]:-0}" -v lo=1000 -v hi="$CODES_MAX" 'BEGIN{ n = r * (w + d) * 1.3 + 2 * c; if (n < prev) n = prev;
      cap = mr * (age - w - d); if (cap > 0 && n > cap) n = cap; if (n < lo) n = lo; if (n > hi) n = hi; printf "%d", n }')"
}

# measure WHO KIND NAME: once; again if other load spoiled it (RETRIES times), or if the codes ran out and
# more can be minted (twice at most: the first line of a server learns how many it needs); prints one line,
# keeps the rate and the server's CPU per operation.
measure() {
  local who="$1" kind="$2" name="$3" tries=0 short=0
  while :; do
    once "$who" "$kind"
    [ -n "$LINE" ] || { say "$MODE $name: codeload failed$NOTE"; return; }
    if [ "$kind" = redeem ]; then
      need_codes "$who"
      if [ "$(field exhausted "$LINE")" = 1 ] && [ "${NEED[$who]}" -gt "$MINTED" ] && [ "$short" -lt 2 ]; then
        short=$((short + 1)); continue
      fi
    fi
    awk -v x="$(field other_cores "$LINE")" -v l="${OTHER_MAX:-0.15}" 'BEGIN{exit !(x <= l)}' && break
    [ "$tries" -ge "${RETRIES:-1}" ] && { NOTE="$NOTE BUSY"; break; }
    tries=$((tries + 1))
  done
  if [ "$tries" -gt 0 ]; then NOTE="$NOTE (retried $tries)"; fi
  if [ "$short" -gt 0 ]; then NOTE="$NOTE (minted more and measured again $short x)"; fi
  local rps ok; rps="$(field rps "$LINE")"; ok="$(field ok "$LINE")"
  if [ "$(field exhausted "$LINE")" = 1 ]; then NOTE="$NOTE [codes ran out: window $(field window_s "$LINE")s]"; fi
  if [ "$kind" = redeem ] && awk -v s="$MINT_SECS" -v w="$W" -v d="$D" -v age="$CODE_AGE_MAX" 'BEGIN{exit !(s + w + d > age)}'; then
    NOTE="$NOTE [oldest code older than ${CODE_AGE_MAX}s at the end]"
  fi
  RATES["$MODE/$name"]="${RATES["$MODE/$name"]:-} $rps"
  CPU["$MODE/$name"]="${CPU["$MODE/$name"]:-} $(field server_us_per_op "$LINE")"
  say "$(awk -v m="$MODE" -v n="$name" -v r="$rps" -v a="$(field p50_ms "$LINE")" -v b="$(field p99_ms "$LINE")" \
    -v e="$(field err "$LINE")" -v s="$(field server_us_per_op "$LINE")" -v sc="$(field server_cpu_s "$LINE")" \
    -v win="$(field window_s "$LINE")" -v l="$(field load_us_per_op "$LINE")" -v q="$(field requests_per_op "$LINE")" \
    -v o="$(field other_cores "$LINE")" -v ok="$ok" \
    'BEGIN{ printf "%-6s %-34s %8.1f /s  p50 %7.2f ms  p99 %7.2f ms  err %s  server %7.1f us/op (%.2f cores)  load %6.1f us/op  %.1f req/op  other %.2f  (%d ok)",
      m, n, r, a, b, e, s, (win > 0 ? sc / win : 0), l, q, o, ok }')$NOTE"
}

# Median and spread ((max - min) / median) of a line's rounds: stats ARRAY-VALUES
stats() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END{ if (NR == 0) { print "0 0"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.0f\n", m, (m > 0 ? 100 * (v[NR] - v[1]) / m : 0) }'; }
# ratio KEY-JETON KEY-PEER: Jeton's median rate over the peer's, and the peer's median CPU per op over Jeton's
ratio() {
  local a sa b sb ca cb
  read -r a sa < <(stats "${RATES[$1]:-}"); read -r b sb < <(stats "${RATES[$2]:-}")
  read -r ca _ < <(stats "${CPU[$1]:-}"); read -r cb _ < <(stats "${CPU[$2]:-}")
  awk -v a="$a" -v b="$b" -v sa="$sa" -v sb="$sb" -v ca="$ca" -v cb="$cb" 'BEGIN{
    if (b > 0) printf "%.2fx (%.0f vs %.0f /s median; spread %d%% / %d%%)", a / b, a, b, sa, sb; else printf "n/a";
    if (ca > 0 && cb > 0) printf "; server CPU per op %.0f vs %.0f us: %.2fx less", ca, cb, cb / ca }'
}

say "date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
say "settings: $C connections (sign-ins: $SIGNIN_C), warm-up ${W}s, measured ${D}s, $ROUNDS rounds; ID tokens $ALG; passwords $SCHEME; $USERS users; $PER_SESSION codes per minting session"
say "versions: $(if has jeton; then "$JETON_BIN" --version 2>/dev/null; else echo "jeton not run"; fi); node $(node --version), oidc-provider $(node -p "require('$PEERS/oidc-provider/node_modules/oidc-provider/package.json').version" 2>/dev/null)"
for MODE in $MODES; do
  if [ "$MODE" = pinned ]; then export ANCHOR_SERVER_CPUS=0; LOADPIN="taskset -c 1"; THREADS=1
  else unset ANCHOR_SERVER_CPUS; LOADPIN=""; THREADS="$(nproc)"; fi
  say "--- mode $MODE ---"
  if has jeton; then start_jeton; fi
  if has oidc; then start_peer; fi
  for round in $(seq "$ROUNDS"); do
    say "round $round"
    order="$SERVERS"; [ $((round % 2)) = 0 ] && order="$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')"
    if [[ " $ONLY " == *" redeem "* ]]; then
      for who in $order; do measure "$who" redeem "$(label "$who") code redemption"; done
    fi
    if [[ " $ONLY " == *" signin "* ]]; then
      for who in $order; do measure "$who" signin "$(label "$who") whole sign-in"; done
    fi
  done
  stop_bg jeton-code; stop_bg oidc-code
done

say "--- medians of the rounds (spread = (max - min) / median; server CPU = user + kernel per operation) ---"
say "| mode | line | median /s | spread | server us/op |"
say "|---|---|---:|---:|---:|"
for MODE in $MODES; do
  for kind in "code redemption" "whole sign-in"; do
    for who in $SERVERS; do
      key="$MODE/$(label "$who") $kind"
      [ -n "${RATES[$key]:-}" ] || continue
      read -r med spread < <(stats "${RATES[$key]}"); read -r cpu _ < <(stats "${CPU[$key]:-}")
      say "| $MODE | $(label "$who") $kind | $med | $spread % | $cpu |"
    done
  done
done
if has jeton && has oidc; then
  say "--- ratios jeton / oidc-provider (median over median, same mode, same run) ---"
  for MODE in $MODES; do
    if [[ " $ONLY " == *" redeem "* ]]; then
      say "$MODE: code redemption $(ratio "$MODE/jeton code redemption" "$MODE/oidc-provider code redemption") — target >= 5x"
    fi
    if [[ " $ONLY " == *" signin "* ]]; then
      say "$MODE: whole sign-in $(ratio "$MODE/jeton whole sign-in" "$MODE/oidc-provider whole sign-in")"
    fi
  done
fi
say "loadavg at the end: $(cut -d' ' -f1-3 /proc/loadavg); log: $OUT"
