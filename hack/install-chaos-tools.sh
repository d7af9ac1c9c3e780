#!/usr/bin/env bash
# Installs what test/chaos needs: iproute2 (network namespaces, blackhole routes) and faketime
# (libfaketime, to run one node with its clock set back). Safe to run again; does nothing when present.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v faketime >/dev/null || need+=(faketime)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-chaos-tools.sh: installing ${need[*]} needs root (try: sudo bash $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
  # Unknown package or stale lists on a fresh machine: refresh them once and try again.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
