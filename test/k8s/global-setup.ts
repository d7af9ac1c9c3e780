/**
 * Global setup of the real-Kubernetes tier: hack/local-k8s.sh's cluster, brought up here unless it already
 * runs (then it is reused, with the project's image rebuilt from this checkout's dist/ and imported), and
 * taken down afterwards when this run brought it up (DYNAMO_K8S_KEEP=1 keeps it). Tests get the paths
 * they need through inject('k8s').
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';

const REPO = resolve(import.meta.dirname, '../..');
const LOCAL_K8S = resolve(REPO, 'hack/local-k8s.sh');

export interface K8sTier {
  /** Admin kubeconfig of the cluster. */
  kubeconfig: string;
  /** Directory holding kubectl (the pinned release) and the other Kubernetes binaries. */
  bin: string;
  /** Directory holding helm. */
  helmBin: string;
  /** hack/local-k8s.sh. */
  script: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    k8s: K8sTier;
  }
}

/** Runs a script, its stderr passed through (progress), and resolves with its exit code and stdout. */
function run(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((res, rej) => {
    const child = spawn('bash', args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.once('error', rej);
    child.once('close', (code) => res({ code: code ?? 1, stdout }));
  });
}

const lastLine = (text: string): string => text.trim().split('\n').pop() ?? '';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.getuid?.() !== 0) throw new Error('the real-Kubernetes tier needs root (hack/local-k8s.sh)');
  const started = Date.now();
  const status = await run([LOCAL_K8S, 'status']);
  const reuse = status.code === 0;
  if (reuse) {
    console.log('test:k8s: reusing the running local cluster; refreshing the project image from dist/');
    const image = await run([LOCAL_K8S, 'image']);
    if (image.code !== 0) throw new Error('hack/local-k8s.sh image failed (its log is above)');
  } else {
    const up = await run([LOCAL_K8S, 'up']);
    if (up.code !== 0) throw new Error('hack/local-k8s.sh up failed (its log is above)');
  }
  const kubeconfig = lastLine((await run([LOCAL_K8S, 'env'])).stdout).replace(/^export KUBECONFIG=/, '');
  const bin = lastLine((await run([resolve(REPO, 'hack/k8s-control-plane.sh')])).stdout);
  const helm = await run([resolve(REPO, 'hack/install-helm.sh')]);
  if (helm.code !== 0) throw new Error('hack/install-helm.sh failed');
  project.provide('k8s', { kubeconfig, bin, helmBin: lastLine(helm.stdout), script: LOCAL_K8S });
  console.log(
    `test:k8s: cluster ${reuse ? 'reused' : 'up'} in ${((Date.now() - started) / 1000).toFixed(0)}s`,
  );
  return async () => {
    if (reuse || process.env.DYNAMO_K8S_KEEP === '1') {
      console.log('test:k8s: leaving the local cluster running (hack/local-k8s.sh down stops it)');
      return;
    }
    const down = await run([LOCAL_K8S, 'down']);
    if (down.code !== 0) throw new Error('hack/local-k8s.sh down failed (its log is above)');
  };
}
