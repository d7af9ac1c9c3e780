#!/usr/bin/env bash
# Installs the system packages the tests need. Safe to run again; does nothing when all are present.
set -euo pipefail
need=()
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
bash "$(dirname "$0")/install-test-tools.sh" # iproute2, faketime (test/chaos), shellcheck (test/chart)
bash "$(dirname "$0")/install-prometheus.sh" # prometheus + promtool for test/dashboard
bash "$(dirname "$0")/install-helm.sh" >/dev/null # helm + kubectl for test/chart (cached under ~/.cache/dynamo-kv)
# etcd (Debian's etcd-server) plus kube-apiserver, kube-controller-manager and kubectl built with Go for
# test/operator and test/e2e; cached in ~/.cache/dynamo-kv/k8s-<version>, so only the first run builds
# (about 5 minutes on 2 cores).
bash "$(dirname "$0")/k8s-control-plane.sh" >/dev/null
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<18)) { console.error("Node >= 20.18 required, have "+process.version); process.exit(1) }'
