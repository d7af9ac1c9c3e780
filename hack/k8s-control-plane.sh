#!/usr/bin/env bash
# Prepares a real Kubernetes control plane for the operator tests (the envtest convention): a directory
# holding etcd, kube-apiserver, kube-controller-manager and kubectl, printed as the last line of stdout
# for use as KUBEBUILDER_ASSETS. Everything else goes to stderr. Safe to run again: it only does what is
# missing, so after the first (long) build it returns at once.
#
#   KUBEBUILDER_ASSETS  a directory already holding kube-apiserver and etcd: used as is, nothing built
#   DYNAMO_K8S_CACHE    where to build (default: ~/.cache/dynamo-kv/k8s-<version>, outside the repo)
#
# Arguments name more binaries to build into the same directory, from the same module: kubelet,
# kube-scheduler and kube-proxy (hack/local-k8s.sh asks for all three).
#
# No Docker and no release downloads: etcd is Debian's etcd-server package, and the Kubernetes binaries
# are built from the k8s.io/kubernetes Go module pinned in hack/k8s/go.mod (bump with hack/k8s/pin.sh).
set -euo pipefail

log() { echo "k8s-control-plane: $*" >&2; }
die() {
  log "$*"
  exit 1
}

extra=()
for b in "$@"; do
  case $b in
    kubelet | kube-scheduler | kube-proxy) extra+=("$b") ;;
    *) die "unknown binary '$b' (kubelet, kube-scheduler or kube-proxy)" ;;
  esac
done

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ ${#extra[@]} -eq 0 ]; then
  if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; building our own instead"
fi

module_dir=$(cd "$(dirname "$0")/k8s" && pwd)
version=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[^[:space:]]*\).*/\1/p' "$module_dir/go.mod")
[ -n "$version" ] || die "no k8s.io/kubernetes version in $module_dir/go.mod"

# CI may run without HOME; Go needs it for its caches too.
if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
cache=${DYNAMO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dynamo-kv/k8s-$version}
bin=$cache/bin
binaries=(kube-apiserver kube-controller-manager kubectl ${extra[@]+"${extra[@]}"})
mkdir -p "$bin"

# Test files starting in parallel all call this script: one builds, the others wait for it.
exec 9>"$cache/.lock"
flock 9

complete() {
  for b in "${binaries[@]}" etcd; do [ -x "$bin/$b" ] || return 1; done
}
if complete; then
  echo "$bin"
  exit 0
fi

# etcd: Kubernetes recommends 3.4.22 or newer (older 3.4 releases can lose data on crash).
min_etcd=3.4.22
etcd_version() { "$1" --version 2>/dev/null | sed -n 's/^etcd Version: *//p'; }
install_etcd() {
  [ "$(id -u)" -eq 0 ] || die "etcd is missing; install Debian's etcd-server (needs root), or set KUBEBUILDER_ASSETS"
  local started=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d answering 101 keeps the package's postinst from starting an etcd service of its own;
  # an existing policy (Docker images ship one) is kept.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends etcd-server)
  # A fresh machine has stale or no package lists: refresh them once and try again.
  "${apt[@]}" </dev/null >&2 || { apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && "${apt[@]}" </dev/null >&2; }
  # Should a service have started anyway, stop it: the tests run their own etcd on other ports.
  if [ -x /etc/init.d/etcd ]; then /etc/init.d/etcd stop >/dev/null 2>&1 || true; fi
  log "installed etcd-server in $((SECONDS - started))s"
}
etcd_path=$(command -v etcd || true)
if [ -z "$etcd_path" ]; then
  install_etcd
  etcd_path=$(command -v etcd) || die "etcd-server installed but no etcd on PATH"
fi
have=$(etcd_version "$etcd_path")
[ -n "$have" ] || die "could not read the version of $etcd_path"
if [ "$(printf '%s\n%s\n' "$min_etcd" "$have" | sort -V | head -n1)" != "$min_etcd" ]; then
  die "$etcd_path is etcd $have; need $min_etcd or newer (or set KUBEBUILDER_ASSETS)"
fi
ln -sf "$etcd_path" "$bin/etcd"

# Kubernetes binaries, built from the pinned module. Module downloads and compiled packages stay in
# Go's own caches, so a rebuild after an interrupted one is quick.
missing=()
for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || missing+=("k8s.io/kubernetes/cmd/$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  go=$(command -v go || true)
  [ -n "$go" ] || [ ! -x /usr/local/go/bin/go ] || go=/usr/local/go/bin/go
  [ -n "$go" ] || die "Go is needed to build kube-apiserver (k8s.io/kubernetes $version); install Go 1.25+"
  log "building ${missing[*]##*/} from k8s.io/kubernetes $version with $("$go" env GOVERSION) into $bin (takes a while the first time)"
  started=$SECONDS
  # Build into a scratch directory and move into place, so an interrupted build never leaves a
  # truncated binary that a later run would take as done.
  scratch=$(mktemp -d "$cache/build.XXXXXX")
  (
    cd "$module_dir"
    # -trimpath and -s -w keep the binaries small; CGO off makes them static, as Kubernetes ships them.
    # -mod=readonly: go.mod and go.sum are pinned; never rewrite them during a build. The -X flags are
    # what Kubernetes' own build stamps, so /version and `kubectl version` report the real release.
    minor=${version#v1.}
    minor=${minor%%.*}
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$go" build -trimpath -ldflags="$ldflags" \
      -o "$scratch/" "${missing[@]}"
  ) </dev/null >&2 || {
    rm -rf "$scratch"
    die "go build failed (k8s.io/kubernetes $version)"
  }
  for p in "${missing[@]}"; do mv -f "$scratch/${p##*/}" "$bin/"; done
  rm -rf "$scratch"
  log "built ${missing[*]##*/} in $((SECONDS - started))s"
fi

complete || die "$bin is incomplete after the build"
echo "$bin"
