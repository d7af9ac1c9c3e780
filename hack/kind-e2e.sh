#!/usr/bin/env bash
# End-to-end test of dynamo-kv on a local kind cluster, the way a user runs it:
#
#   1. builds the image (Dockerfile) and loads it into a new kind cluster;
#   2. installs the Helm chart (CRD, RBAC, 2 operator replicas electing a leader);
#   3. applies examples/cluster.yaml (3 nodes, with the image just built) and waits until the
#      DynamoCluster is Ready and every node's ring shows all members up;
#   4. runs workload Jobs in the cluster (the image's `dynamo put/get` CLI and a script writing and
#      reading keys with quorum through the client Service), scaling 3 -> 5 -> 3 with
#      `kubectl patch dyn ... spec.nodes` while writing, waiting for each phase, and verifying that every
#      key written so far reads back after each one;
#   5. deletes the kind cluster (on success and on failure, after printing diagnostics), unless
#      KEEP_CLUSTER=1.
#
# Needs a running Docker engine, kind (https://kind.sigs.k8s.io, v0.20 or newer) and bash; helm and
# kubectl are taken from PATH, or else from hack/install-helm.sh. Not part of `npm test` or .ci/run (CI
# machines have no Docker engine). Takes 5-15 minutes.
#
#   bash hack/kind-e2e.sh
#
# Settings (environment):
#   KIND_CLUSTER      kind cluster name (dynamo-e2e). An existing cluster of that name is reused and kept;
#                     only what this script installed in it is removed afterwards.
#   KIND_NODE_IMAGE   kindest/node image for a new cluster (kind's default when empty)
#   IMAGE_REPOSITORY  image repository (dynamo-kv) and IMAGE_TAG its tag (e2e)
#   SKIP_BUILD=1      use an existing local image instead of building it
#   KEEP_CLUSTER=1    leave the cluster and everything in it running, for debugging
#   KEYS              keys written per workload batch (200)
#   TIMEOUT           seconds allowed for each wait: install, Ready, a Job (600)
set -euo pipefail

cd "$(dirname "$0")/.."

KIND_CLUSTER=${KIND_CLUSTER:-dynamo-e2e}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-dynamo-kv}
IMAGE_TAG=${IMAGE_TAG:-e2e}
IMAGE="${IMAGE_REPOSITORY}:${IMAGE_TAG}"
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
KEYS=${KEYS:-200}
TIMEOUT=${TIMEOUT:-600}

RELEASE=dynamo
OPERATOR_NAMESPACE=dynamo-system
NAMESPACE=dynamo-e2e
BUCKET=e2e
WORKLOAD_CONFIGMAP=dynamo-e2e-workload

log() { printf '\n[%s] kind-e2e: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# --- tools ------------------------------------------------------------------------------------------
for tool in docker kind; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (see the header of $0)"
done
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  PATH="$(bash hack/install-helm.sh | tail -n 1):$PATH"
fi
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (docker info failed)"
[ -f examples/cluster.yaml ] || die "examples/cluster.yaml is missing"

work=$(mktemp -d)
# A kubeconfig of our own: the user's ~/.kube/config and current context are left alone.
export KUBECONFIG="$work/kubeconfig"
created_cluster=0
cluster_name=""

diagnostics() {
  log "diagnostics"
  kubectl get dyn,statefulsets,pods,services,pvc,jobs -n "$NAMESPACE" -o wide || true
  if [ -n "$cluster_name" ]; then kubectl describe dyn "$cluster_name" -n "$NAMESPACE" | tail -n 40 || true; fi
  kubectl get events -n "$NAMESPACE" --sort-by=.lastTimestamp | tail -n 30 || true
  kubectl get pods -n "$OPERATOR_NAMESPACE" -o wide || true
  kubectl logs -n "$OPERATOR_NAMESPACE" -l app.kubernetes.io/component=operator --all-containers \
    --prefix --tail=100 || true
  kubectl logs -n "$NAMESPACE" -l app.kubernetes.io/component=node --all-containers --prefix --tail=40 || true
  kubectl logs -n "$NAMESPACE" -l app.kubernetes.io/component=e2e-workload --prefix --tail=40 || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$status" -ne 0 ] && [ -f "$KUBECONFIG" ]; then diagnostics; fi
  if [ "$KEEP_CLUSTER" = 1 ]; then
    log "keeping kind cluster $KIND_CLUSTER (kind delete cluster --name $KIND_CLUSTER to remove it)"
  elif [ "$created_cluster" = 1 ]; then
    log "deleting kind cluster $KIND_CLUSTER"
    kind delete cluster --name "$KIND_CLUSTER" || true
  elif [ -f "$KUBECONFIG" ]; then
    log "removing what this run installed in the existing cluster $KIND_CLUSTER"
    kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=true --timeout=180s || true
    helm uninstall "$RELEASE" -n "$OPERATOR_NAMESPACE" --wait --timeout 180s || true
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then log "PASSED"; else log "FAILED (exit $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- image and cluster -------------------------------------------------------------------------------
if [ "$SKIP_BUILD" != 1 ]; then
  log "building $IMAGE"
  docker build -t "$IMAGE" .
fi

if grep -qx "$KIND_CLUSTER" <<<"$(kind get clusters 2>/dev/null)"; then
  log "reusing kind cluster $KIND_CLUSTER"
  kind export kubeconfig --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG"
else
  log "creating kind cluster $KIND_CLUSTER"
  created_cluster=1
  node_image=()
  [ -z "$KIND_NODE_IMAGE" ] || node_image=(--image "$KIND_NODE_IMAGE")
  kind create cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s ${node_image[@]+"${node_image[@]}"}
fi
kubectl cluster-info >/dev/null

log "loading $IMAGE into kind"
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

# --- operator ----------------------------------------------------------------------------------------
log "installing the chart (release $RELEASE in $OPERATOR_NAMESPACE)"
helm upgrade --install "$RELEASE" charts/dynamo-kv \
  --namespace "$OPERATOR_NAMESPACE" --create-namespace \
  --set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --set operator.replicas=2 \
  --wait --timeout "${TIMEOUT}s"
kubectl get crd dynamoclusters.dynamokv.io >/dev/null
kubectl wait -n "$OPERATOR_NAMESPACE" --for=condition=Available deployment \
  -l app.kubernetes.io/component=operator --timeout "${TIMEOUT}s"
kubectl get pods,leases -n "$OPERATOR_NAMESPACE"

# --- the DynamoCluster -------------------------------------------------------------------------------
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The example as written, but with the image just built, 3 nodes, and no namespace of its own.
kubectl patch --local -f examples/cluster.yaml --type merge -o yaml \
  -p "{\"metadata\":{\"namespace\":null},\"spec\":{\"nodes\":3,\"image\":\"$IMAGE\",\"imagePullPolicy\":\"Never\"}}" \
  >"$work/cluster.yaml"
cluster_name=$(kubectl apply -n "$NAMESPACE" -f "$work/cluster.yaml" -o jsonpath='{.metadata.name}')
[ -n "$cluster_name" ] || die "applying examples/cluster.yaml gave no DynamoCluster name"
log "applied DynamoCluster $cluster_name in $NAMESPACE"

# Prints the member states of every node's ring view, one line per node ("up up up"), read from inside
# the node's own container (the image has node but no curl): over HTTPS, trusting the cluster CA the pod
# mounts (its certificate names 127.0.0.1), with an admin token from the tokens file it mounts.
ring_states() {
  local pod
  for pod in $(kubectl get pods -n "$NAMESPACE" -o name \
    -l "app.kubernetes.io/component=node,dynamokv.io/cluster=$cluster_name"); do
    kubectl exec -n "$NAMESPACE" "$pod" -- node -e '
      const fs = require("fs");
      const line = fs.readFileSync("/etc/dynamo/auth/tokens", "utf8").split("\n").find((l) => l.startsWith("admin "));
      const options = {
        host: "127.0.0.1", port: 8080, path: "/admin/ring",
        ca: fs.readFileSync("/etc/dynamo/tls/ca.crt"),
        headers: { authorization: "Bearer " + line.split(/\s+/)[1] },
      };
      require("https").get(options, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => {
          try {
            const ring = JSON.parse(body);
            console.log(ring.members.map((m) => m.state).filter((s) => s !== "removed").join(" "));
          } catch { console.log("unreachable"); }
        });
      }).on("error", () => console.log("unreachable"));' 2>/dev/null || echo unreachable
  done
}

# Waits until the operator has seen the latest spec, reports the cluster Ready with $1 ready nodes,
# exactly $1 node pods exist (none left terminating), and every node sees $1 members, all up.
wait_ready() {
  local want=$1 deadline=$((SECONDS + TIMEOUT)) status states expected="up" last="" i gens phase ready cond
  for ((i = 1; i < want; i++)); do expected+=" up"; done
  log "waiting for $cluster_name to be Ready with $want nodes"
  while :; do
    status=$(kubectl get dyn "$cluster_name" -n "$NAMESPACE" -o jsonpath='{.metadata.generation}/{.status.observedGeneration} {.status.phase} {.status.readyNodes} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    read -r gens phase ready cond <<<"$status" || true
    if [ "${gens%/*}" = "${gens#*/}" ] && [ "$phase" = Ready ] && [ "$ready" = "$want" ] && [ "$cond" = True ]; then
      local pods
      pods=$(kubectl get pods -n "$NAMESPACE" --no-headers \
        -l "app.kubernetes.io/component=node,dynamokv.io/cluster=$cluster_name" 2>/dev/null | wc -l)
      states=$(ring_states | sort -u)
      if [ "$pods" -eq "$want" ] && [ "$states" = "$expected" ]; then
        kubectl get dyn "$cluster_name" -n "$NAMESPACE"
        return 0
      fi
      status="$status; $pods pods; rings: $(echo "$states" | tr '\n' '|')"
    fi
    if [ "$status" != "$last" ]; then
      echo "  generation/observed phase readyNodes Ready: $status" >&2
      last=$status
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$cluster_name not Ready with $want nodes after ${TIMEOUT}s"
    sleep 5
  done
}

# --- workload ----------------------------------------------------------------------------------------
# The workload script: writes or verifies one batch of keys through the client Service over HTTPS (the
# cluster CA through NODE_EXTRA_CA_CERTS, the write token from the cluster's auth Secret; quorum reads and
# writes), retrying only what may be transient (network errors, 503).
cat >"$work/workload.mjs" <<'EOF'
const [mode, batch, countArg] = process.argv.slice(2);
const endpoint = process.env.DYNAMO_ENDPOINT;
const bucket = process.env.BUCKET;
const count = Number(countArg);
const url = (i) => `${endpoint}/buckets/${bucket}/keys/${batch}-${i}`;
const expected = (i) => `value-${batch}-${i}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const auth = { authorization: `Bearer ${process.env.DYNAMO_TOKEN}` };
class Transient extends Error {}

async function attempt(i) {
  let res;
  try {
    res =
      mode === 'write'
        ? await fetch(`${url(i)}?w=quorum`, {
            method: 'PUT',
            headers: { 'content-type': 'text/plain', ...auth },
            body: expected(i),
          })
        : await fetch(`${url(i)}?r=quorum`, { headers: auth });
  } catch (err) {
    throw new Transient(`${err.cause?.code ?? err.message}`);
  }
  const body = await res.text();
  if (res.status === 503) throw new Transient(`503 ${body}`);
  if (mode === 'write') {
    if (res.status !== 204 && res.status !== 200) throw new Error(`PUT ${batch}-${i}: ${res.status} ${body}`);
    return;
  }
  if (res.status === 200 && body === expected(i)) return;
  // A retried write may leave siblings holding the same value: still the right data.
  if (res.status === 300) {
    const values = JSON.parse(body).siblings.map((s) => Buffer.from(s.value, 'base64').toString());
    if (values.every((v) => v === expected(i))) return;
  }
  throw new Error(`GET ${batch}-${i}: ${res.status} ${body.slice(0, 200)}`);
}

async function one(i) {
  for (let n = 1; ; n++) {
    try {
      return await attempt(i);
    } catch (err) {
      if (!(err instanceof Transient) || n >= 10) throw err;
      await sleep(500 * n);
    }
  }
}

let next = 0;
const failures = [];
async function worker() {
  while (next < count) {
    const i = next++;
    await one(i).catch((err) => failures.push(err.message));
  }
}
const started = Date.now();
await Promise.all(Array.from({ length: 8 }, worker));
console.log(JSON.stringify({ mode, batch, keys: count, failures: failures.length, ms: Date.now() - started }));
for (const f of failures.slice(0, 20)) console.error(f);
process.exit(failures.length === 0 ? 0 : 1);
EOF
# What each workload Job runs: per batch, the CLI stores (write) or reads back (verify) cli-<batch>, then
# the script handles the batch's keys.
cat >"$work/run.sh" <<'EOF'
set -eu
mode=$1
shift
for batch in "$@"; do
  if [ "$mode" = write ]; then
    dynamo put "$BUCKET" "cli-$batch" "hello-$batch" --w quorum >/dev/null
  else
    got=$(dynamo get "$BUCKET" "cli-$batch" --r quorum 2>/dev/null) || got="(error)"
    [ "$got" = "hello-$batch" ] || { echo "dynamo get cli-$batch: $got, expected hello-$batch" >&2; exit 1; }
  fi
  node /workload/workload.mjs "$mode" "$batch" "$KEYS"
done
echo "workload $mode $* done"
EOF
kubectl create configmap "$WORKLOAD_CONFIGMAP" -n "$NAMESPACE" \
  --from-file=workload.mjs="$work/workload.mjs" --from-file=run.sh="$work/run.sh" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

client_service() {
  # The client Service is the cluster's ClusterIP Service (the other one, for peers, is headless).
  kubectl get services -n "$NAMESPACE" -l "dynamokv.io/cluster=$cluster_name" \
    -o jsonpath='{range .items[?(@.spec.clusterIP!="None")]}{.metadata.name}{"\n"}{end}' | head -n 1
}

# Starts a Job running run.sh ($1 write|verify, then batch names) as the image's non-root user, with a
# read-only root filesystem; prints the Job's name.
start_job() {
  local mode=$1 service job
  shift
  service=$(client_service)
  [ -n "$service" ] || die "no client Service for $cluster_name"
  job="e2e-$mode-$(echo "$*" | tr ' ' '-')-$RANDOM"
  kubectl apply -n "$NAMESPACE" -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $job
  labels:
    app.kubernetes.io/component: e2e-workload
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $TIMEOUT
  template:
    metadata:
      labels:
        app.kubernetes.io/component: e2e-workload
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: workload
          image: $IMAGE
          imagePullPolicy: Never
          command: ["sh", "/workload/run.sh", "$mode"$(printf ', "%s"' "$@")]
          env:
            - name: DYNAMO_ENDPOINT
              value: https://$service:8080
            # The cluster CA (for fetch and the CLI) and the write token, from the operator's Secrets.
            - name: NODE_EXTRA_CA_CERTS
              value: /etc/dynamo-ca/ca.crt
            - name: DYNAMO_CA
              value: /etc/dynamo-ca/ca.crt
            - name: DYNAMO_TOKEN
              valueFrom:
                secretKeyRef:
                  name: $cluster_name-auth
                  key: write-token
            - name: BUCKET
              value: $BUCKET
            - name: KEYS
              value: "$KEYS"
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: workload
              mountPath: /workload
              readOnly: true
            - name: ca
              mountPath: /etc/dynamo-ca
              readOnly: true
      volumes:
        - name: workload
          configMap:
            name: $WORKLOAD_CONFIGMAP
        - name: ca
          secret:
            secretName: $cluster_name-tls
            items:
              - key: ca.crt
                path: ca.crt
EOF
  echo "$job"
}

# Waits for a Job to succeed; prints its output; fails the run when the Job fails.
wait_job() {
  local job=$1 deadline=$((SECONDS + TIMEOUT)) succeeded failed
  while :; do
    succeeded=$(kubectl get job "$job" -n "$NAMESPACE" -o jsonpath='{.status.succeeded}')
    failed=$(kubectl get job "$job" -n "$NAMESPACE" -o jsonpath='{.status.failed}')
    if [ "${succeeded:-0}" -ge 1 ] || [ "${failed:-0}" -ge 1 ] || [ "$SECONDS" -ge "$deadline" ]; then
      break
    fi
    sleep 3
  done
  kubectl logs -n "$NAMESPACE" "job/$job" --all-containers || true
  [ "${succeeded:-0}" -ge 1 ] || die "workload job $job did not succeed"
  log "job $job succeeded"
}

run_job() {
  local job
  job=$(start_job "$@")
  wait_job "$job"
}

scale() {
  log "scaling $cluster_name to $1 nodes"
  kubectl patch dyn "$cluster_name" -n "$NAMESPACE" --type merge -p "{\"spec\":{\"nodes\":$1}}"
}

# --- the run -----------------------------------------------------------------------------------------
wait_ready 3
run_job write a
run_job verify a

# Scale up while batch b is being written.
job=$(start_job write b)
scale 5
wait_job "$job"
wait_ready 5
run_job verify a b

# Scale down (decommissioning nodes 4 and 3) while batch c is being written.
job=$(start_job write c)
scale 3
wait_job "$job"
wait_ready 3
run_job verify a b c

log "every key written at 3, during 3->5 and during 5->3 nodes reads back at 3 nodes"
