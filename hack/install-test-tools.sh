#!/usr/bin/env bash
# Installs the Debian tools the tests use: iproute2 (network namespaces and blackhole routes for
# test/chaos), faketime (libfaketime, to run a chaos node with its clock set back), shellcheck (the
# scripts' lint in test/chart) and openssl (test certificate authorities for the TLS tests). Safe to
# run again; does nothing when all are present.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v faketime >/dev/null || need+=(faketime)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-tools.sh: installing ${need[*]} needs root (try: sudo bash $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
  # Unknown package or stale lists on a fresh machine: refresh them once and try again.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
