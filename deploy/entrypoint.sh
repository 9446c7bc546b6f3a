#!/bin/sh
# Derives a node's identity from its host name when it runs as a member of a StatefulSet (jeton-0, jeton-1,
# ...): node id = ordinal + 1, Raft address = <pod>.<JETON_PEER_SERVICE>:8001, and every pod but the first
# joins through jeton-0 on its first start. Outside a StatefulSet (JETON_PEER_SERVICE unset) it only runs jeton.
# The node's certificate and join token are picked by the config (`{node_id}` in cluster.cert, cluster.key and
# cluster.join_token_file), so the node id set here also selects them.
set -eu
if [ "${1:-}" = "serve" ] && [ -n "${JETON_PEER_SERVICE:-}" ]; then
    host="$(hostname)"
    ordinal="${host##*-}"
    base="${host%-*}"
    case "$ordinal" in ''|*[!0-9]*) echo "jeton-entrypoint: host name $host has no ordinal" >&2; exit 1 ;; esac
    export JETON_NODE_ID="$((ordinal + 1))"
    export JETON_RAFT_ADDR="${host}.${JETON_PEER_SERVICE}:8001"
    if [ "$ordinal" != "0" ] && [ -z "${JETON_JOIN:-}" ]; then
        export JETON_JOIN="${base}-0.${JETON_PEER_SERVICE}:8001"
    fi
fi
exec /usr/local/bin/jeton "$@"
