#!/bin/sh
# Entrypoint of the container image (deploy/Containerfile).
#
# Settings, from lowest to highest precedence:
#   1. jeton's built-in defaults;
#   2. the image's defaults: data dir /var/lib/jeton (the image's volume), HTTP on 0.0.0.0:8000. They only
#      fill what nothing below sets: a mounted config file that sets data_dir or [http] addr keeps them;
#   3. the config file (`serve --config FILE`, or JETON_CONFIG);
#   4. JETON_* environment variables you set (docker -e, compose `environment:`, a pod's `env:`);
#   5. command-line flags after `serve`.
#
# As a member of a StatefulSet (JETON_PEER_SERVICE set), the node's identity comes from its pod name,
# jeton-N (JETON_POD_NAME, else the host name): node id N+1, Raft address JETON_PEER_ADDR_PATTERN with
# {pod}, {n} (the node id) and {service} filled in (default {pod}.{service}:8001), and every pod but the
# first joins through pod 0 on its first start (a member ignores the join target once it holds a
# membership). JETON_NODE_ID, JETON_RAFT_ADDR and JETON_JOIN set explicitly are kept.
# JETON_BIN names the jeton binary (default /usr/local/bin/jeton).
# The node's certificate and join token are picked by the config (`{node_id}` in cluster.cert, cluster.key and
# cluster.join_token_file), so the node id set here also selects them.
set -eu

# Whether the TOML file $1 sets key $3 in table $2 ("" for the top level).
config_sets() {
    [ -n "$1" ] && [ -r "$1" ] || return 1
    awk -v table="$2" -v key="$3" '
        /^[[:space:]]*\[/ { t = $0; sub(/^[[:space:]]*\[[[:space:]]*/, "", t); sub(/[[:space:]]*\].*$/, "", t); next }
        t == table && $0 ~ ("^[[:space:]]*\"?" key "\"?[[:space:]]*=") { found = 1 }
        END { exit !found }' "$1"
}

if [ "${1:-}" = "serve" ]; then
    # The config file jeton will read: a --config flag wins over JETON_CONFIG, as in jeton itself.
    config="${JETON_CONFIG:-}"
    previous=""
    for arg in "$@"; do
        if [ "$previous" = "--config" ]; then config="$arg"; fi
        case "$arg" in --config=*) config="${arg#--config=}" ;; esac
        previous="$arg"
    done
    if [ -z "${JETON_DATA_DIR:-}" ] && ! config_sets "$config" "" data_dir; then
        export JETON_DATA_DIR=/var/lib/jeton
    fi
    if [ -z "${JETON_HTTP_ADDR:-}" ] && ! config_sets "$config" http addr; then
        export JETON_HTTP_ADDR=0.0.0.0:8000
    fi

    if [ -n "${JETON_PEER_SERVICE:-}" ]; then
        pod="${JETON_POD_NAME:-$(hostname)}"
        ordinal="${pod##*-}"
        base="${pod%-*}"
        case "$ordinal" in '' | *[!0-9]*)
            echo "jeton-entrypoint: pod name $pod does not end in -<ordinal>" >&2
            exit 1
            ;;
        esac
        pattern="${JETON_PEER_ADDR_PATTERN:-{pod\}.{service\}:8001}"
        # peer_addr POD NODE_ID
        peer_addr() {
            printf '%s\n' "$pattern" | sed -e "s|{pod}|$1|g" -e "s|{n}|$2|g" -e "s|{service}|$JETON_PEER_SERVICE|g"
        }
        if [ -z "${JETON_NODE_ID:-}" ]; then
            JETON_NODE_ID=$((ordinal + 1))
            export JETON_NODE_ID
        fi
        if [ -z "${JETON_RAFT_ADDR:-}" ]; then
            JETON_RAFT_ADDR=$(peer_addr "$pod" "$((ordinal + 1))")
            export JETON_RAFT_ADDR
        fi
        if [ "$ordinal" != "0" ] && [ -z "${JETON_JOIN:-}" ]; then
            JETON_JOIN=$(peer_addr "${base}-0" 1)
            export JETON_JOIN
        fi
    fi
fi
exec "${JETON_BIN:-/usr/local/bin/jeton}" "$@"
