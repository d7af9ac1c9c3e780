#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, without Docker, kind or any registry:
#
#   sudo bash hack/local-k8s.sh up       build what is missing (cached), start everything, wait until usable
#   sudo bash hack/local-k8s.sh status   what runs (and, when the API answers, nodes and pods)
#   sudo bash hack/local-k8s.sh down     stop everything up started; remove its mounts, network namespaces,
#                                        bridge, iptables rules, cgroups and state; restore the sysctls
#   sudo bash hack/local-k8s.sh image    rebuild the project's image from dist/ and import it (cluster up)
#   sudo bash hack/local-k8s.sh build    only install and build what up needs (binaries, images), start nothing
#   bash hack/local-k8s.sh env           print `export KUBECONFIG=...` for this cluster
#   sudo bash hack/local-k8s.sh ctr ...  ctr on the cluster's containerd, namespace k8s.io (images ls, ...)
#
# What runs, all as host processes of root started by `up` (logs in $STATE/logs):
#   etcd                     Debian's etcd-server (as hack/k8s-control-plane.sh installs it)
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#                            built from the k8s.io/kubernetes module pinned in hack/k8s/go.mod, by
#                            hack/k8s-control-plane.sh, cached in ~/.cache/dynamo-kv/k8s-<version>
#   containerd + runc        Debian's packages; runc through hack/local-k8s's wrapper (below)
#   CNI                      Debian's containernetworking-plugins: bridge (lk8s0, 10.89.0.0/24), host-local,
#                            portmap, loopback
#   provisioner              hack/local-k8s/provisioner.mjs: `local` volumes for the default StorageClass
# and, as pods: CoreDNS (kube-system/coredns, Service kube-dns at 10.96.0.10), built from its Go module
# (hack/coredns, cached in ~/.cache/dynamo-kv/coredns-<version>). Images are built here, never pulled: the
# pause image from the pinned module's build/pause/linux/pause.c, CoreDNS's, and the project's
# (docker.io/library/dynamo-kv:<chart appVersion>, the name the chart and examples/cluster.yaml use): a
# minimal Debian rootfs (mmdebstrap, cached), this machine's Node.js binary, package.json, the production
# node_modules and dist/node + dist/operator (run `npm run build` first), made an OCI image with umoci and
# imported with `ctr -n k8s.io images import`.
#
# This machine's quirks, handled here: cgroup v1 (kubelet and containerd use the cgroupfs driver); no
# CAP_SYS_RESOURCE, so runc cannot set a negative oom_score_adj (containerd gives pause containers -998):
# the runc wrapper raises negative scores to 0. The kubelet sets vm.overcommit_memory, vm.panic_on_oom,
# kernel.panic, kernel.panic_on_oops and kernel.keys.root_max*, and this script net.ipv4.ip_forward:
# `down` puts back the values they had before `up`.
#
# Nothing is reachable from outside the machine, and nothing goes out: the API server and kubelet listen
# on the bridge address 10.89.0.1, everything else on 127.0.0.1; Service addresses route to the bridge;
# pods' packets are forwarded only back onto the bridge (iptables chain LK8S-ISOLATE); CoreDNS answers
# cluster names only (no upstream).
#
# Needs root, Go (/usr/local/go/bin/go or on PATH), Node.js and the Debian packages it installs with apt
# when missing. The first `up` builds for a while (see README.md); later ones reuse the cache.
#
#   DYNAMO_LOCAL_K8S_STATE   state directory (default /var/lib/dynamo-kv-k8s; wiped by down)
#   DYNAMO_LOCAL_K8S_TIMEOUT seconds `up` waits for each component (default 180)
#   DYNAMO_LOCAL_K8S_KEEP_ON_FAILURE=1  a failed `up` leaves what it started (else it cleans up, keeping logs)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
STATE=${DYNAMO_LOCAL_K8S_STATE:-/var/lib/dynamo-kv-k8s}
RUN_DIR=/run/dynamo-kv-k8s
TIMEOUT=${DYNAMO_LOCAL_K8S_TIMEOUT:-180}

NODE_NAME=dynamo-local
BRIDGE=lk8s0
NODE_IP=10.89.0.1
POD_SUBNET=10.89.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
ZONE=local-a
ETCD_PORT=12379
APISERVER_PORT=6443
CONTAINERD_SOCK=$RUN_DIR/containerd/containerd.sock
PAUSE_IMAGE=localhost/pause:3.10.1
PAUSE_TAG=3.10.1
# The iptables chain that keeps pods' traffic on this machine (setup_network).
ISOLATE_CHAIN=LK8S-ISOLATE
# The kernel settings the kubelet (and this script) change; down restores them.
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys
  kernel/keys/root_maxbytes net/ipv4/ip_forward net/ipv4/conf/all/route_localnet)
# Daemons in start order; down stops them in reverse.
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy provisioner)

log() { printf '[%s] local-k8s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/dynamo-kv
IMAGE_CACHE=$CACHE_ROOT/local-k8s
K8S_VERSION=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[^[:space:]]*\).*/\1/p' "$REPO/hack/k8s/go.mod")
COREDNS_VERSION=$(awk '$1 == "github.com/coredns/coredns" { print $2 } $1 == "require" && $2 == "github.com/coredns/coredns" { print $3 }' "$REPO/hack/coredns/go.mod")
APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/charts/dynamo-kv/Chart.yaml")
PROJECT_IMAGE=docker.io/library/dynamo-kv:$APP_VERSION
COREDNS_IMAGE=localhost/coredns:${COREDNS_VERSION#v}
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
BIN=""

go_binary() {
  local go
  go=$(command -v go || true)
  [ -n "$go" ] || [ ! -x /usr/local/go/bin/go ] || go=/usr/local/go/bin/go
  [ -n "$go" ] || die "Go is needed to build the Kubernetes binaries and CoreDNS"
  echo "$go"
}

need_root() { [ "$(id -u)" -eq 0 ] || die "$1 needs root (sudo bash $0 $1)"; }

# --- processes -----------------------------------------------------------------------------------------

pid_of() {
  local f=$RUN_DIR/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] || return 1
  # The pid file could outlive its process and the pid be reused: the command line must name the daemon.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(daemon_binary "$1")" || return 1
  echo "$pid"
}

daemon_binary() {
  case $1 in
    provisioner) echo "provisioner.mjs" ;;
    *) echo "$1" ;;
  esac
}

# start_daemon NAME COMMAND...: runs it in a session of its own, stdin closed, output in $STATE/logs.
start_daemon() {
  local name=$1 pidfile=$RUN_DIR/$1.pid
  shift
  rm -f "$pidfile"
  # bash writes its own pid and execs the daemon, so the pid file holds the daemon's pid.
  # shellcheck disable=SC2016 # expanded by that bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    [ -s "$pidfile" ] && return 0
    sleep 0.05
  done
  die "$name did not start (see $STATE/logs/$name.log)"
}

stop_daemon() {
  local name=$1 grace=${2:-15} pid i
  pid=$(pid_of "$name") || {
    rm -f "$RUN_DIR/$name.pid"
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  if [ -d "/proc/$pid" ]; then
    log "$name ($pid) still running after ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# wait_for WHAT COMMAND...: retries the command until it succeeds; fails with the daemon's log tail.
wait_for() {
  local what=$1 daemon=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -n "$daemon" ] && ! pid_of "$daemon" >/dev/null; then
      tail -n 30 "$STATE/logs/$daemon.log" >&2 || true
      die "$daemon exited while waiting for $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -z "$daemon" ] || tail -n 30 "$STATE/logs/$daemon.log" >&2 || true
      die "timed out after ${TIMEOUT}s waiting for $what"
    fi
    sleep 0.5
  done
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# --- dependencies and builds ---------------------------------------------------------------------------

install_packages() {
  local need=()
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v umoci >/dev/null || need+=(umoci)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  command -v ip >/dev/null || need+=(iproute2)
  command -v gcc >/dev/null || need+=(gcc)
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
  [ ${#need[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A policy-rc.d answering 101 keeps the packages' scripts from starting a containerd of their own; an
  # existing one is kept as it is.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}") ok=1
  # A fresh machine has stale or no package lists: refresh them once and try again.
  "${apt[@]}" </dev/null >&2 || { apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && "${apt[@]}" </dev/null >&2; } || ok=0
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  [ "$ok" = 1 ] || die "apt-get install ${need[*]} failed"
}

build_kubernetes() {
  BIN=$(bash "$REPO/hack/k8s-control-plane.sh" kubelet kube-scheduler kube-proxy | tail -n 1)
  [ -x "$BIN/kubelet" ] || die "hack/k8s-control-plane.sh gave no kubelet in '$BIN'"
}

COREDNS_BIN=""
build_coredns() {
  [ -n "$COREDNS_VERSION" ] || die "no github.com/coredns/coredns version in hack/coredns/go.mod"
  local dir=$CACHE_ROOT/coredns-$COREDNS_VERSION
  COREDNS_BIN=$dir/coredns
  [ -x "$COREDNS_BIN" ] && return 0
  mkdir -p "$dir"
  local go started=$SECONDS
  go=$(go_binary)
  log "building CoreDNS $COREDNS_VERSION with $("$go" env GOVERSION) (once; cached in $dir)"
  (cd "$REPO/hack/coredns" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$go" build -trimpath \
    -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$dir/coredns.tmp" .) \
    </dev/null >&2 || die "building CoreDNS failed"
  mv -f "$dir/coredns.tmp" "$COREDNS_BIN"
  log "built CoreDNS in $((SECONDS - started))s"
}

# oci_image NAME:TAG ROOTFS_DIR OUT_TAR UMOCI_CONFIG_ARGS...: an OCI archive of the directory as one layer.
oci_image() {
  local ref=$1 rootfs=$2 out=$3 work
  shift 3
  work=$(mktemp -d "$IMAGE_CACHE/.oci.XXXXXX")
  local tag=${ref##*:}
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
  cp -a "$rootfs/." "$work/bundle/rootfs/"
  umoci repack --image "$work/layout:$tag" "$work/bundle"
  umoci config --image "$work/layout:$tag" --os linux --architecture amd64 "$@"
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$out.tmp" .
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

build_pause_image() {
  PAUSE_TAR=$IMAGE_CACHE/pause-$PAUSE_TAG.tar
  [ -s "$PAUSE_TAR" ] && return 0
  local go src root
  go=$(go_binary)
  src=$(cd "$REPO/hack/k8s" && "$go" list -m -f '{{.Dir}}' k8s.io/kubernetes 2>/dev/null)/build/pause/linux/pause.c
  [ -f "$src" ] || die "no build/pause/linux/pause.c in the k8s.io/kubernetes module ($src)"
  root=$(mktemp -d "$IMAGE_CACHE/.pause.XXXXXX")
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-$K8S_VERSION" -o "$root/pause" "$src"
  oci_image "$PAUSE_IMAGE" "$root" "$PAUSE_TAR" --config.entrypoint /pause --config.user 65535:65535
  rm -rf "$root"
  log "built the pause image ($PAUSE_IMAGE) from $src"
}

build_coredns_image() {
  COREDNS_TAR=$IMAGE_CACHE/coredns-$COREDNS_VERSION.tar
  [ -s "$COREDNS_TAR" ] && return 0
  local root
  root=$(mktemp -d "$IMAGE_CACHE/.coredns.XXXXXX")
  install -m 0755 "$COREDNS_BIN" "$root/coredns"
  oci_image "$COREDNS_IMAGE" "$root" "$COREDNS_TAR" --config.entrypoint /coredns --config.user 65532:65532
  rm -rf "$root"
  log "built the CoreDNS image ($COREDNS_IMAGE)"
}

# The base of the project's image: a minimal Debian (Essential packages and libstdc++ for node), cached.
BASE_PACKAGES=libstdc++6,libgcc-s1,ca-certificates
base_rootfs() {
  BASE_TAR=$IMAGE_CACHE/rootfs-bookworm-$(echo "$BASE_PACKAGES" | sha256sum | cut -c1-12).tar
  [ -s "$BASE_TAR" ] && return 0
  local started=$SECONDS
  log "making a minimal Debian bookworm rootfs with mmdebstrap (once; cached in $BASE_TAR)"
  mmdebstrap --quiet --format=tar --variant=essential --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$BASE_TAR.tmp" http://deb.debian.org/debian </dev/null >&2 || die "mmdebstrap failed"
  mv -f "$BASE_TAR.tmp" "$BASE_TAR"
  log "made the rootfs in $((SECONDS - started))s"
}

# The project's image: what the Dockerfile builds, from this checkout's build output.
project_image() {
  local node_bin node_version
  if [ ! -f "$REPO/dist/operator/src/main.js" ] || [ ! -f "$REPO/dist/node/src/cli/main.js" ]; then
    die "no build output in $REPO/dist: run npm run build first"
  fi
  node_bin=$(command -v node) || die "node is not on PATH"
  node_bin=$(readlink -f "$node_bin")
  node_version=$("$node_bin" -v)
  "$node_bin" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' ||
    die "the image needs Node.js >= 20.18; $node_bin is $node_version"
  # Linked against glibc and libstdc++ only (the official builds are): it runs on the Debian base.
  if ldd "$node_bin" | grep -v -E 'linux-vdso|libdl|libstdc\+\+|libm\.|libgcc_s|libpthread|libc\.|ld-linux' | grep -q '=>'; then
    die "$node_bin links libraries a minimal Debian lacks (use an official Node.js build)"
  fi
  local hash
  hash=$( {
    echo "$BASE_TAR $node_version"
    sha256sum "$node_bin" "$REPO/package.json" "$REPO/package-lock.json"
    (cd "$REPO" && find dist/node dist/operator -type f ! -name '*.map' -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16)
  PROJECT_TAR=$IMAGE_CACHE/dynamo-kv-$hash.tar
  if [ ! -s "$PROJECT_TAR" ]; then
    local started=$SECONDS root
    log "building $PROJECT_IMAGE from dist/ (node $node_version)"
    root=$(mktemp -d "$IMAGE_CACHE/.dynamo.XXXXXX")
    tar -C "$root" -xf "$BASE_TAR"
    install -m 0755 "$node_bin" "$root/usr/local/bin/node"
    mkdir -p "$root/app/dist" "$root/var/lib/dynamo"
    cp "$REPO/package.json" "$REPO/package-lock.json" "$root/app/"
    cp -a "$REPO/node_modules" "$root/app/"
    (cd "$root/app" && PATH="$(dirname "$node_bin"):$PATH" npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
      --offline >/dev/null) || die "npm prune failed"
    cp -a "$REPO/dist/node" "$REPO/dist/operator" "$root/app/dist/"
    find "$root/app/dist" -name '*.map' -delete
    chmod 0755 "$root/app/dist/node/src/cli/main.js"
    ln -s /app/dist/node/src/cli/main.js "$root/usr/local/bin/dynamo"
    chown 65532:65532 "$root/var/lib/dynamo"
    rm -rf "$root/var/cache/apt" "$root/var/lib/apt/lists"
    oci_image "$PROJECT_IMAGE" "$root" "$PROJECT_TAR" \
      --config.user 65532:65532 --config.workingdir /app \
      --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env NODE_ENV=production \
      --config.env DYNAMO_DATA_DIR=/var/lib/dynamo --config.env NPM_CONFIG_UPDATE_NOTIFIER=false \
      --config.volume /var/lib/dynamo --config.exposedports 8080/tcp --config.exposedports 7070/tcp \
      --config.cmd node --config.cmd dist/node/src/cli/main.js --config.cmd node
    rm -rf "$root"
    # Older builds of the image are of no use.
    find "$IMAGE_CACHE" -maxdepth 1 -name 'dynamo-kv-*.tar' ! -name "dynamo-kv-$hash.tar" -delete
    log "built $PROJECT_IMAGE in $((SECONDS - started))s"
  fi
}

# import_image REF TAR: imports the OCI archive under REF, pinned (never garbage collected).
import_image() {
  local ref=$1 tar=$2 stamp
  stamp=$STATE/images/$(echo "$1" | tr '/:' '__')
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$tar" ] && ctr_ images ls -q | grep -qx "$ref"; then return 0; fi
  # Just after containerd starts (its CRI plugin still starting) an import can come back without the
  # image: try again.
  local attempt
  for attempt in 1 2 3 4 5; do
    ctr_ images import --base-name "${ref%:*}" "$tar" >/dev/null
    ctr_ images ls -q | grep -qx "$ref" && break
    [ "$attempt" -lt 5 ] || die "importing $tar did not give $ref"
    sleep 2
  done
  ctr_ images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  mkdir -p "$STATE/images"
  echo "$tar" >"$stamp"
  log "imported $ref"
}

# --- certificates and configuration --------------------------------------------------------------------

# cert NAME SUBJECT [SANS]: a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 subject=$2 sans=${3:-} pki=$STATE/pki ext
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  ext=$pki/$name.ext
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
  chmod 600 "$pki/$name.key"
}

kubeconfig() {
  local name=$1 user=$2
  cat >"$STATE/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: https://$NODE_IP:$APISERVER_PORT
      certificate-authority: $STATE/pki/ca.crt
users:
  - name: $user
    user:
      client-certificate: $STATE/pki/$user.crt
      client-key: $STATE/pki/$user.key
contexts:
  - name: local
    context: { cluster: local, user: $user }
current-context: local
EOF
  chmod 600 "$STATE/$name.kubeconfig"
}

make_pki() {
  local pki=$STATE/pki
  mkdir -p "$pki"
  chmod 700 "$pki"
  openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=dynamo-kv local-k8s CA" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=kubernetes-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kube-proxy kube-proxy
  kubeconfig kubelet kubelet
}

write_configs() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/networks" "$STATE/containerd" "$RUN_DIR/containerd" "$STATE/bin"
  # runc as containerd's shim calls it, with negative oom_score_adj values raised to 0 in the container's
  # config (create) or process (exec): without CAP_SYS_RESOURCE runc cannot lower a score, and the pause
  # container asks for -998. A score of 0 only makes the container as likely an OOM victim as any process.
  cat >"$STATE/bin/runc" <<'EOF'
#!/bin/sh
# Written by hack/local-k8s.sh: see its header.
bundle="" process=""
prev=""
for a in "$@"; do
  case $prev in
    --bundle | -b) bundle=$a ;;
    --process | -p) process=$a ;;
  esac
  case $a in
    --bundle=*) bundle=${a#--bundle=} ;;
    --process=*) process=${a#--process=} ;;
  esac
  prev=$a
done
for f in ${bundle:+"$bundle/config.json"} ${process:+"$process"}; do
  if [ -f "$f" ] && grep -q '"oomScoreAdj": *-' "$f"; then
    sed -i -E 's/"oomScoreAdj": *-[0-9]+/"oomScoreAdj":0/' "$f"
  fi
done
exec /usr/bin/runc "$@"
EOF
  chmod 0755 "$STATE/bin/runc"
  cat >"$STATE/containerd/config.toml" <<EOF
# Written by hack/local-k8s.sh.
version = 2
root = "$STATE/containerd"
state = "$RUN_DIR/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  max_container_log_line_size = 16384
  # The pods' network namespaces under the state directory (not /run/netns), so down finds them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$STATE/bin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  cat >"$STATE/cni/net.d/10-dynamo-local.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dynamo-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_SUBNET", "rangeStart": "10.89.0.10", "rangeEnd": "10.89.0.250", "gateway": "$NODE_IP" }]],
        "dataDir": "$STATE/cni/networks"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  # Pods resolve cluster names only: no upstream resolver of this machine is passed on to them.
  echo "# hack/local-k8s.sh: no upstream resolver" >"$STATE/resolv.conf"
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs" "$STATE/volumes"
  cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $STATE/pki/ca.crt }
authorization:
  mode: Webhook
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
maxPods: 60
serializeImagePulls: false
# The images are built here and cannot be pulled again: never garbage collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
# Volumes of deleted pods and their status go quickly, so scenarios that delete pods move on.
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
  cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# Masquerade all Service traffic: replies then come back through the host whatever the bridge does.
iptables:
  masqueradeAll: true
  minSyncPeriod: 1s
  syncPeriod: 30s
# 0: leave this machine's conntrack settings as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# --- network -------------------------------------------------------------------------------------------

setup_network() {
  mkdir -p "$STATE/sysctl"
  local s
  for s in "${SYSCTLS[@]}"; do
    [ -f "/proc/sys/$s" ] || continue
    [ -f "$STATE/sysctl/$(echo "$s" | tr / .)" ] || cat "/proc/sys/$s" >"$STATE/sysctl/$(echo "$s" | tr / .)"
  done
  # The kubelet links every container's log into /var/log/containers: down removes the directory too
  # when it was not there before.
  [ -d /var/log/containers ] || touch "$STATE/made-var-log-containers"
  # The netns present before: down removes only the ones the runtime made after.
  find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null >"$STATE/netns-before" || true
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Nothing leaves the machine. Service addresses route to the bridge: a connection to a ClusterIP that
  # kube-proxy has not programmed yet (a Service just made) goes nowhere instead of to the default gateway.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # Pods' packets are forwarded back onto the bridge (Service traffic to another pod) and nowhere else.
  iptables -w -N "$ISOLATE_CHAIN" 2>/dev/null || iptables -w -F "$ISOLATE_CHAIN"
  iptables -w -A "$ISOLATE_CHAIN" -o "$BRIDGE" -j RETURN
  iptables -w -A "$ISOLATE_CHAIN" -j REJECT
  iptables -w -C FORWARD -i "$BRIDGE" -j "$ISOLATE_CHAIN" 2>/dev/null ||
    iptables -w -I FORWARD 1 -i "$BRIDGE" -j "$ISOLATE_CHAIN"
}

# --- up ------------------------------------------------------------------------------------------------

start_control_plane() {
  start_daemon etcd "$(command -v etcd)" --name=local --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster="local=http://127.0.0.1:$((ETCD_PORT + 1))" --logger=zap --log-level=warn
  wait_for "etcd" etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
    --client-ca-file="$STATE/pki/ca.crt" \
    --kubelet-client-certificate="$STATE/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$STATE/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$STATE/pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$STATE/pki/sa.pub" --service-account-signing-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction,PodTopologyLabels \
    --feature-gates=PodTopologyLabelsAdmission=true \
    --allow-privileged=true --profiling=false --v=1
  wait_for "kube-apiserver" kube-apiserver kubectl_ get --raw /readyz

  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --cert-dir="$STATE/controller-manager-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/ca.crt" \
    --cluster-signing-cert-file="$STATE/pki/ca.crt" --cluster-signing-key-file="$STATE/pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false --v=1
  start_daemon kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false --v=1
  wait_for "kube-controller-manager" kube-controller-manager curl -fsSk https://127.0.0.1:10257/healthz
  wait_for "kube-scheduler" kube-scheduler curl -fsSk https://127.0.0.1:10259/healthz
}

start_node() {
  start_daemon containerd "$(command -v containerd)" --config "$STATE/containerd/config.toml"
  wait_for "containerd" containerd ctr_ version
  wait_for "containerd's CRI plugin" containerd grep -q 'Start cri plugin' "$STATE/logs/containerd.log"
  import_image "$PAUSE_IMAGE" "$PAUSE_TAR"
  import_image "$COREDNS_IMAGE" "$COREDNS_TAR"
  import_image "$PROJECT_IMAGE" "$PROJECT_TAR"

  start_daemon kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --volume-plugin-dir="$STATE/kubelet-volume-plugins" \
    --node-labels="topology.kubernetes.io/zone=$ZONE,topology.kubernetes.io/region=local" --v=1
  start_daemon kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml" --v=1
  wait_for "the node to be Ready" kubelet \
    kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_for "kube-proxy" kube-proxy curl -fsS http://127.0.0.1:10256/healthz

  start_daemon provisioner env KUBECONFIG="$KUBECONFIG_ADMIN" VOLUME_DIR="$STATE/volumes" NODE_NAME="$NODE_NAME" \
    "$(command -v node)" "$REPO/hack/local-k8s/provisioner.mjs"
  sed "s#__COREDNS_IMAGE__#$COREDNS_IMAGE#" "$REPO/hack/local-k8s/addons.yaml" | kubectl_ apply -f - >/dev/null
  wait_for "CoreDNS" "" kubectl_ -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null || return 1; done
}

cmd_up() {
  need_root up
  local started=$SECONDS
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR.lock"
  flock -w 900 9 || die "another hack/local-k8s.sh holds $RUN_DIR.lock"
  if all_running && [ -f "$KUBECONFIG_ADMIN" ]; then
    build_kubernetes
    if kubectl_ get --raw /readyz >/dev/null 2>&1; then
      log "already up (KUBECONFIG=$KUBECONFIG_ADMIN)"
      echo "$KUBECONFIG_ADMIN"
      return 0
    fi
  fi
  if [ -d "$STATE" ] || [ -d "$RUN_DIR/containerd" ]; then
    log "cleaning up what a previous run left"
    cmd_down_locked
  fi
  # A failed up leaves nothing running: its logs are kept, everything else goes as with down.
  trap up_failed EXIT
  build_all
  log "built or found everything in $((SECONDS - started))s; starting"
  mkdir -p "$STATE/logs" "$RUN_DIR"
  chmod 700 "$STATE"
  make_pki
  write_configs
  setup_network
  start_control_plane
  start_node
  trap - EXIT
  log "up in $((SECONDS - started))s: export KUBECONFIG=$KUBECONFIG_ADMIN"
  echo "$KUBECONFIG_ADMIN"
}

up_failed() {
  local status=$? kept
  trap - EXIT
  [ "$status" -ne 0 ] || return 0
  if [ "${DYNAMO_LOCAL_K8S_KEEP_ON_FAILURE:-}" = 1 ]; then
    log "up failed; leaving everything as it is (DYNAMO_LOCAL_K8S_KEEP_ON_FAILURE=1; down removes it)"
    exit "$status"
  fi
  if [ -d "$STATE/logs" ]; then
    kept=$(mktemp -d /tmp/dynamo-local-k8s-logs.XXXXXX)
    cp -a "$STATE/logs/." "$kept/"
    log "up failed; the daemons' logs are in $kept; cleaning up"
  else
    log "up failed; cleaning up"
  fi
  cmd_down_locked || true
  exit "$status"
}

build_all() {
  install_packages
  mkdir -p "$IMAGE_CACHE"
  build_kubernetes
  build_coredns
  build_pause_image
  build_coredns_image
  base_rootfs
  project_image
}

cmd_build() {
  need_root build
  local started=$SECONDS
  build_all
  log "built or found everything in $((SECONDS - started))s"
}

cmd_image() {
  need_root image
  all_running || die "the cluster is not up (sudo bash $0 up)"
  mkdir -p "$IMAGE_CACHE"
  base_rootfs
  project_image
  import_image "$PROJECT_IMAGE" "$PROJECT_TAR"
}

# --- down ----------------------------------------------------------------------------------------------

# Mount points under the given directories, deepest first.
mounts_under() {
  local dir
  for dir in "$@"; do
    awk -v d="$dir" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' /proc/self/mountinfo
  done | sort -r -u
}

remove_containers() {
  pid_of containerd >/dev/null || return 0
  local ids id ns
  ids=$(ctr_ containers ls -q 2>/dev/null || true)
  # Every sandbox's network namespace, while containerd can still say which they are.
  for id in $ids; do
    ns=$(ctr_ containers info "$id" 2>/dev/null | grep -o '"/[^"]*/netns/cni-[^"]*"' | tr -d '"' || true)
    [ -z "$ns" ] || echo "$ns" >>"$STATE/netns-made"
  done
  for id in $(ctr_ tasks ls -q 2>/dev/null || true); do ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  local i
  for ((i = 0; i < 50; i++)); do
    ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
    sleep 0.2
  done
  for id in $(ctr_ tasks ls -q 2>/dev/null || true); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
  for id in $ids; do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
}

# The processes of every pod (the kubelet's cgroups) and the shims of our containerd, by pid.
kill_leftovers() {
  local pids="" f p
  for f in /sys/fs/cgroup/*/kubepods; do
    [ -d "$f" ] || continue
    pids+=" $(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
  done
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK"; then pids+=" ${p#/proc/}"; fi
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

remove_cgroups() {
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io; do
    [ -d "$f" ] || continue
    find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

remove_iptables_rules() {
  command -v iptables-save >/dev/null || return 0
  if [ -x "${BIN:-}/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true; fi
  local save
  for save in iptables-save ip6tables-save; do
    command -v "$save" >/dev/null || continue
    # What kube-proxy's cleanup left, the kubelet's chains, the CNI plugins' and ours (KUBE-*, CNI-*,
    # LK8S-*): those chains, their rules and the rules that jump to them. Each table is restored as a
    # whole, with everything else in it as it was.
    "$save" 2>/dev/null | grep -q -E '(KUBE-|CNI-|LK8S-)' || continue
    "$save" 2>/dev/null | grep -v -E '^:(KUBE-|CNI-|LK8S-)|^-A (KUBE-|CNI-|LK8S-)| -[jg] (KUBE-|CNI-|LK8S-)' |
      "${save%-save}-restore" || log "could not remove the KUBE-/CNI-/LK8S- rules with ${save%-save}-restore"
  done
}

cmd_down_locked() {
  [ -n "$BIN" ] || BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin
  stop_daemon provisioner 5
  # The kubelet first, so nothing restarts the containers removed next.
  stop_daemon kubelet 15
  remove_containers
  stop_daemon containerd 15
  kill_leftovers
  local d
  for d in kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_daemon "$d" 15; done
  remove_iptables_rules
  # Mounts: secrets and volumes of the kubelet, rootfs and shm of containerd.
  local m
  for m in $(mounts_under "$STATE" "$RUN_DIR"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  # The pods' network namespaces (their veths go with them).
  local ns
  {
    cat "$STATE/netns-made" 2>/dev/null || true
    if [ -f "$STATE/netns-before" ]; then
      comm -13 <(sort "$STATE/netns-before") <(find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort) | { grep '^cni-' || true; } | sed 's#^#/var/run/netns/#'
    fi
  } | sort -u | while read -r ns; do
    [ -n "$ns" ] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  remove_cgroups
  # Symlinks the kubelet made to our pod logs.
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
  if [ -f "$STATE/made-var-log-containers" ]; then rmdir /var/log/containers 2>/dev/null || true; fi
  local s f
  for f in "$STATE"/sysctl/*; do
    [ -f "$f" ] || continue
    s=$(basename "$f" | tr . /)
    cat "$f" >"/proc/sys/$s" 2>/dev/null || log "could not restore $s"
  done
  if [ -n "$(mounts_under "$STATE" "$RUN_DIR")" ]; then
    log "mounts left under $STATE or $RUN_DIR; not removing them:"
    mounts_under "$STATE" "$RUN_DIR" >&2
    return 1
  fi
  rm -rf "$STATE" "$RUN_DIR"
}

cmd_down() {
  need_root down
  local started=$SECONDS
  mkdir -p "$(dirname "$RUN_DIR")"
  exec 9>"$RUN_DIR.lock"
  flock -w 900 9 || die "another hack/local-k8s.sh holds $RUN_DIR.lock"
  cmd_down_locked
  log "down in $((SECONDS - started))s"
}

# --- status --------------------------------------------------------------------------------------------

cmd_status() {
  local d pid up=0 total=0
  for d in "${DAEMONS[@]}"; do
    total=$((total + 1))
    if pid=$(pid_of "$d"); then
      up=$((up + 1))
      printf '%-24s running (pid %s)\n' "$d" "$pid"
    else
      printf '%-24s stopped\n' "$d"
    fi
  done
  BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin
  if [ "$up" -gt 0 ] && [ -x "$BIN/kubectl" ] && [ -r "$KUBECONFIG_ADMIN" ] &&
    kubectl_ get --raw /readyz >/dev/null 2>&1; then
    echo
    kubectl_ get nodes -o wide
    echo
    kubectl_ get pods -A -o wide
  fi
  echo
  echo "KUBECONFIG=$KUBECONFIG_ADMIN"
  if [ "$up" -eq "$total" ]; then
    echo "up"
  elif [ "$up" -eq 0 ]; then
    echo "down"
    return 3
  else
    echo "partly up ($up of $total daemons): run down, then up"
    return 1
  fi
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  image) cmd_image ;;
  build) cmd_build ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_ADMIN" ;;
  ctr)
    shift
    ctr_ "$@"
    ;;
  *)
    echo "usage: $0 up|down|status|build|image|env|ctr ARGS..." >&2
    exit 2
    ;;
esac
