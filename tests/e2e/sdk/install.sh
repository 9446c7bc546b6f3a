#!/usr/bin/env bash
# Installs Casdoor's own SDKs for tests/e2e/sdk.rs, each only when it is missing or at another version, so a
# repeated run costs nothing: the Python SDK (PyPI `casdoor`) into tests/e2e/sdk/.venv, the Node SDK (npm
# `casdoor-nodejs-sdk`, with the dependency versions of node/package-lock.json) into
# tests/e2e/sdk/node/node_modules. Both folders are ignored by git. .ci/run calls this before the tests.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON_SDK=1.43.3
NODE_SDK=1.24.0

installed_python="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("casdoor"))' 2>/dev/null || true)"
if [ "$installed_python" != "$PYTHON_SDK" ]; then
  echo "installing casdoor==$PYTHON_SDK (PyPI) into tests/e2e/sdk/.venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "casdoor==$PYTHON_SDK"
fi

installed_node="$(cd node && node -p 'require("casdoor-nodejs-sdk/package.json").version' 2>/dev/null || true)"
if [ "$installed_node" != "$NODE_SDK" ]; then
  echo "installing casdoor-nodejs-sdk@$NODE_SDK (npm) into tests/e2e/sdk/node/node_modules"
  (cd node && npm ci --no-audit --no-fund --loglevel=error)
fi
