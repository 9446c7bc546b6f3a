#!/usr/bin/env bash
# Import rate of `jeton import casdoor --data-dir` on a generated Casdoor data set (PostgreSQL).
#
#   bench/casdoor/import.sh [USERS=1000000] [RUNS=3]
#   IMPORT_ARGS=--strict bench/casdoor/import.sh ...   (extra import options, e.g. the cost of --strict's
#                                                       check pass)
#
# Creates database casdoor_bench_<USERS> (fixtures + USERS generated users, see generate.sql) unless it
# exists, then imports it RUNS times into a fresh data dir (first import) and once more into the same dir
# (re-run: everything unchanged), each under /usr/bin/time for wall time and peak RSS. Prints every run and
# the medians. Needs psql and a release build (JETON_BIN, default $CARGO_TARGET_DIR/release/jeton).
set -euo pipefail
cd "$(dirname "$0")/../.."
USERS=${1:-1000000}
RUNS=${2:-3}
PGUSER=${PGUSER:-postgres}
DB=casdoor_bench_${USERS}
BIN=${JETON_BIN:-${CARGO_TARGET_DIR:-target}/release/jeton}
PSQL=(psql -h 127.0.0.1 -U "$PGUSER" -v ON_ERROR_STOP=1 -q)
FIX=tests/fixtures/casdoor
read -r -a EXTRA <<< "${IMPORT_ARGS:-}"

if ! "${PSQL[@]}" -d "$DB" -Atc 'SELECT 1' >/dev/null 2>&1; then
    echo "== generating $DB ($USERS users)"
    start=$(date +%s.%N)
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
    "${PSQL[@]}" -d "$DB" -f "$FIX/schema-postgres.sql" -f "$FIX/seed-postgres.sql"
    "${PSQL[@]}" -d "$DB" -v users="$USERS" -f bench/casdoor/generate.sql
    echo "   generated in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
echo "== $("${PSQL[@]}" -d "$DB" -Atc 'SELECT count(*) FROM "user"') users in $DB; $RUNS runs; $($BIN --version); options: ${IMPORT_ARGS:-none}"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
first_t=(); first_m=(); again_t=(); again_m=()
for run in $(seq 1 "$RUNS"); do
    work=$(mktemp -d)
    for pass in first again; do
        /usr/bin/time -f "%e %M" -o "$work/time" "$BIN" import casdoor --quiet "${EXTRA[@]}" \
            --from "postgres://$PGUSER@127.0.0.1:5432/$DB" --data-dir "$work/data" --report "$work/$pass.json" \
            > "$work/$pass.out" 2> "$work/$pass.err" || { cat "$work/$pass.err"; exit 1; }
        read -r secs kib < "$work/time"
        written=$(python3 -c "import json,sys; r=json.load(open('$work/$pass.json')); print(sum(r['written'].values()), sum(r['unchanged'].values()))")
        printf '   run %d %-5s  %7.1f s  %8.0f users/s  peak RSS %5d MiB  (written, unchanged: %s)\n' \
            "$run" "$pass" "$secs" "$(echo "$USERS / $secs" | bc -l)" "$((kib / 1024))" "$written"
        if [ "$pass" = first ]; then first_t+=("$secs"); first_m+=("$kib"); else again_t+=("$secs"); again_m+=("$kib"); fi
    done
    du -sh "$work/data" | awk '{print "   data dir " $1}'
    rm -rf "$work"
done
ft=$(printf '%s\n' "${first_t[@]}" | median); fm=$(printf '%s\n' "${first_m[@]}" | median)
at=$(printf '%s\n' "${again_t[@]}" | median); am=$(printf '%s\n' "${again_m[@]}" | median)
printf '== median first import: %.1f s (%.0f users/s), peak RSS %.0f MiB\n' "$ft" "$(echo "$USERS / $ft" | bc -l)" "$(echo "$fm / 1024" | bc -l)"
printf '== median re-run (unchanged): %.1f s (%.0f users/s), peak RSS %.0f MiB\n' "$at" "$(echo "$USERS / $at" | bc -l)" "$(echo "$am / 1024" | bc -l)"
