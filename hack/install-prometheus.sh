#!/usr/bin/env bash
# Installs Debian's prometheus package (/usr/bin/prometheus and /usr/bin/promtool) for the dashboard
# test, which runs its own Prometheus on loopback. Safe to run again; does nothing when both are present.
# The package's service is never left running: containers have no systemd, and the test needs no daemon.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-prometheus.sh: installing packages needs root (try: sudo bash $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# policy-rc.d answering 101 tells invoke-rc.d (which the postinst uses) not to start the service.
# Keep an existing policy (Docker images ship one); otherwise add ours for the install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

install() { apt-get install -y -qq --no-install-recommends prometheus; }
if ! install; then
  # Unknown package or stale lists on a fresh machine: refresh them once and try again.
  apt-get update -qq
  install
fi

# Should anything have started the packaged service anyway (it runs as the user prometheus), stop it:
# first through its init script, then by pid. Our own test runs of prometheus run as another user.
service_pids() {
  local uid
  uid=$(id -u prometheus 2>/dev/null) || return 0
  for status in /proc/[0-9]*/status; do
    if grep -qx 'Name:[[:space:]]*prometheus' "$status" 2>/dev/null &&
      grep -Eq "^Uid:[[:space:]]+${uid}[[:space:]]" "$status" 2>/dev/null; then
      basename "$(dirname "$status")"
    fi
  done
}
if [ -n "$(service_pids)" ]; then
  if [ -x /etc/init.d/prometheus ]; then /etc/init.d/prometheus stop >/dev/null 2>&1 || true; fi
  for pid in $(service_pids); do kill "$pid" 2>/dev/null || true; done
fi

prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
