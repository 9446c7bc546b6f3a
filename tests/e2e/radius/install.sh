#!/usr/bin/env bash
# Installs what tests/e2e/radius.rs runs, only where it is missing, so a repeated run costs nothing:
# radclient and radtest (Debian's freeradius-utils), and PyCryptodome for Debian's python3
# (python3-pycryptodome: MD4 and DES for the MS-CHAPv2 client in tests/e2e/radius/client.py, which builds
# its packets itself with Python's hashlib and hmac). .ci/run calls this before the tests.
set -euo pipefail

packages=()
for tool in radclient radtest; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        packages+=(freeradius-utils)
        break
    fi
done
if ! [ -x /usr/bin/python3 ]; then
    packages+=(python3 python3-pycryptodome)
elif ! /usr/bin/python3 -c 'import Cryptodome.Cipher.DES, Cryptodome.Hash.MD4' >/dev/null 2>&1; then
    packages+=(python3-pycryptodome)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
