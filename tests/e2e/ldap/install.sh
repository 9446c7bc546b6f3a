#!/usr/bin/env bash
# Installs the OpenLDAP command-line clients tests/e2e/ldap.rs runs (ldapsearch, ldapwhoami, ldapcompare from
# Debian's ldap-utils), only where they are missing, so a repeated run costs nothing. .ci/run calls this
# before the tests.
set -euo pipefail

missing=
for tool in ldapsearch ldapwhoami ldapcompare; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ -n "$missing" ]; then
    echo "installing ldap-utils (ldapsearch, ldapwhoami, ldapcompare)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ldap-utils >/dev/null
fi
