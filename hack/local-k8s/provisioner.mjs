// The volume provisioner of hack/local-k8s.sh (what local-path-provisioner does on kind, without its helper
// pods and images): for every pending claim of the `local-dir` StorageClass it makes a directory under
// VOLUME_DIR and a `local` PersistentVolume pre-bound to the claim and pinned to the one node; once a
// claim is deleted and its volume Released (reclaim policy Delete) it removes the directory and the
// volume. `local` volumes, unlike hostPath, get the pod's fsGroup applied by the kubelet, as cloud disks do.
//
//   KUBECONFIG=... VOLUME_DIR=... NODE_NAME=... node hack/local-k8s/provisioner.mjs
//
// It polls the API server every second (a few lists on a one-node cluster) rather than keeping watches.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

const PROVISIONER = 'dynamokv.io/local-dir';
const STORAGE_CLASS = 'local-dir';
const { KUBECONFIG, VOLUME_DIR, NODE_NAME } = process.env;
if (!KUBECONFIG || !VOLUME_DIR || !NODE_NAME) {
  console.error('provisioner: KUBECONFIG, VOLUME_DIR and NODE_NAME are required');
  process.exit(2);
}

const kc = new KubeConfig();
kc.loadFromFile(KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const log = (msg) => console.log(`${new Date().toISOString()} ${msg}`);

async function provision(claim) {
  const { namespace, name, uid } = claim.metadata;
  const pvName = `pvc-${uid}`;
  const path = join(VOLUME_DIR, pvName);
  mkdirSync(path, { recursive: true, mode: 0o755 });
  try {
    await core.createPersistentVolume({
      body: {
        metadata: { name: pvName, annotations: { 'pv.kubernetes.io/provisioned-by': PROVISIONER } },
        spec: {
          capacity: { storage: claim.spec.resources?.requests?.storage ?? '1Gi' },
          accessModes: claim.spec.accessModes ?? ['ReadWriteOnce'],
          volumeMode: 'Filesystem',
          persistentVolumeReclaimPolicy: 'Delete',
          storageClassName: STORAGE_CLASS,
          claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name, uid },
          local: { path },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [NODE_NAME] }],
                },
              ],
            },
          },
        },
      },
    });
    log(`provisioned ${pvName} at ${path} for ${namespace}/${name}`);
  } catch (err) {
    if (err?.code !== 409) throw err;
  }
}

async function reclaim(volume) {
  const path = volume.spec?.local?.path;
  // Only directories this provisioner made.
  if (path?.startsWith(`${VOLUME_DIR}/`)) rmSync(path, { recursive: true, force: true });
  await core.deletePersistentVolume({ name: volume.metadata.name }).catch((err) => {
    if (err?.code !== 404) throw err;
  });
  log(`deleted ${volume.metadata.name} (${volume.status?.phase}) and ${path}`);
}

async function pass() {
  const [claims, volumes] = await Promise.all([
    core.listPersistentVolumeClaimForAllNamespaces(),
    core.listPersistentVolume(),
  ]);
  const existing = new Set(volumes.items.map((v) => v.metadata.name));
  for (const claim of claims.items) {
    if (claim.spec?.storageClassName !== STORAGE_CLASS || claim.spec?.volumeName) continue;
    if (claim.status?.phase !== 'Pending' || claim.metadata.deletionTimestamp) continue;
    if (existing.has(`pvc-${claim.metadata.uid}`)) continue;
    await provision(claim);
  }
  for (const volume of volumes.items) {
    if (volume.metadata.annotations?.['pv.kubernetes.io/provisioned-by'] !== PROVISIONER) continue;
    if (volume.spec?.persistentVolumeReclaimPolicy !== 'Delete') continue;
    if (volume.status?.phase === 'Released' || volume.status?.phase === 'Failed') await reclaim(volume);
  }
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => (stopping = true));
log(`provisioner ${PROVISIONER} for StorageClass ${STORAGE_CLASS}: volumes in ${VOLUME_DIR} on ${NODE_NAME}`);
while (!stopping) {
  await pass().catch((err) => log(`pass failed: ${err?.body?.message ?? err?.message ?? err}`));
  await sleep(1000);
}
log('stopped');
