#!/usr/bin/env bash
# Installs what tests/e2e/browser.rs drives, only where it is missing, so a repeated run costs nothing:
# Debian's chromium (the browser, run headless) and chromium-driver (chromedriver, the W3C WebDriver
# server the tests talk to). Both come from the same Debian source package, so their versions match, which
# chromedriver insists on. .ci/run calls this before the tests.
set -euo pipefail

packages=()
if ! command -v chromium >/dev/null 2>&1; then
    packages+=(chromium)
fi
if ! command -v chromedriver >/dev/null 2>&1; then
    packages+=(chromium-driver)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
