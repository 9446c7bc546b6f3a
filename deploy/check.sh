#!/usr/bin/env bash
# Static checks of the deploy files, run by .ci/run (installs its tools where they are missing):
#   - shellcheck: deploy/*.sh, .ci/*, fuzz/*.sh, tests/e2e/ldap/install.sh,
#     tests/e2e/radius/install.sh, bench/ldap.sh and bench/radius.sh (Debian's shellcheck);
#   - systemd-analyze verify: deploy/jeton.service (from Debian's systemd; needs no running systemd). It
#     insists that ExecStart's binary exists, so a copy of the unit points it at a built jeton (or, without
#     one, at another executable): everything else is checked as shipped;
#   - kubernetes-validate --strict: deploy/k8s/*.yaml against the Kubernetes API schemas the PyPI package
#     bundles (offline; unknown fields are errors);
#   - deploy/compose.yaml parses, and exactly one of its services builds the image.
# What the files do when they run is tested in tests/e2e/deploy.rs (the entrypoint) and
# tests/e2e/lifecycle.rs (a config's relative data_dir, as the unit runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

updated=
apt_install() {
    if [ -z "$updated" ]; then apt-get update -qq; updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install --quiet kubernetes-validate

echo "-- shellcheck"
shellcheck deploy/*.sh .ci/run .ci/databases fuzz/*.sh tests/e2e/ldap/install.sh tests/e2e/radius/install.sh bench/ldap.sh bench/radius.sh

echo "-- systemd-analyze verify deploy/jeton.service"
bin="${CARGO_TARGET_DIR:-target}/release/jeton"
[ -x "$bin" ] || bin="$(type -P true)"
unit_dir="$(mktemp -d)"
trap 'rm -rf "$unit_dir"' EXIT
sed "s#^ExecStart=/usr/local/bin/jeton #ExecStart=$(realpath "$bin") #" deploy/jeton.service >"$unit_dir/jeton.service"
grep -q "^ExecStart=$(realpath "$bin") serve " "$unit_dir/jeton.service"
# verify prints problems and exits non-zero on errors; warnings are errors here too.
# Other units installed on the machine (freeradius.service, say) are loaded too and may warn: only what
# concerns ours counts.
out="$(systemd-analyze verify --man=no "$unit_dir/jeton.service" 2>&1)" || { echo "$out"; exit 1; }
ours="$(grep -F "jeton.service" <<<"$out" || true)"
if [ -n "$ours" ]; then echo "$ours"; exit 1; fi
[ -z "$out" ] || echo "(other units' warnings, not ours: $(wc -l <<<"$out") lines)"

echo "-- kubernetes-validate deploy/k8s"
kubernetes-validate --strict --quiet deploy/k8s/*.yaml

echo "-- deploy/compose.yaml"
python3 - <<'PY'
import yaml
compose = yaml.safe_load(open("deploy/compose.yaml"))
builders = [name for name, s in compose["services"].items() if "build" in s]
assert builders == ["certs"], f"one service builds the image, not {builders}"
images = {s.get("image") for s in compose["services"].values()}
assert images == {"jeton:local"}, f"every service runs the one image: {images}"
PY
echo "deploy checks passed"
