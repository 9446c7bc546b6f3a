#!/usr/bin/env bash
# Installs what the relying party of tests/e2e/oidc_rp.rs (tests/e2e/oidc_rp/rp.py) runs on: authlib, joserfc
# (authlib's JOSE library, which rp.py calls directly), requests and cryptography from PyPI, at the versions
# below, into a venv at $HOME/.cache/jeton-rp-venv (outside the clone, so every checkout and worktree on the
# machine shares it; JETON_RP_VENV names another). Only what is missing or at another version is installed,
# so a repeated run costs nothing. .ci/run calls this before the tests.
set -euo pipefail
venv="${JETON_RP_VENV:-$HOME/.cache/jeton-rp-venv}"
want="Authlib==1.9.6 joserfc==1.8.0 requests==2.34.2 cryptography==50.0.2"

installed="$("$venv/bin/python" - 2>/dev/null <<'EOF' || true
import importlib.metadata as m
print(" ".join(f"{n}=={m.version(n)}" for n in ("Authlib", "joserfc", "requests", "cryptography")))
EOF
)"
if [ "$installed" != "$want" ]; then
    echo "installing $want (PyPI) into $venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # one argument per requirement
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
fi
