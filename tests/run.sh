#!/usr/bin/env bash
# Runs every test: installs what the tests need (nats-server, nginx, promtool, python3-yaml)
# when missing, then checks formatting and lints, then runs the test suite.
# --no-fail-fast: a failing test binary must not hide the verdicts of the others.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# promtool (Debian package prometheus): the alert rules' unit tests (tests/deploy_ops.rs).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The compose and Kubernetes manifests are parsed with python3's yaml module (tests/deploy_ops.rs).
{ python3 -c 'import yaml' || /usr/bin/python3 -c 'import yaml'; } >/dev/null 2>&1 || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
# promtool was installed above: its tests must run, not skip.
# Not NAS_*: the server reads every NAS_ variable as a setting.
export TEST_REQUIRE_PROMTOOL=1

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --no-fail-fast 2>&1
