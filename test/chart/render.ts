/**
 * Renders the Helm chart (charts/dynamo-kv) with a real helm binary, for the chart tests and for any test
 * that applies the rendered manifests to an API server. helm comes from $HELM when set, else from
 * hack/install-helm.sh (cached outside the repository after the first run).
 */
import { execFile } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';

const run = promisify(execFile);

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const CHART_DIR = resolve(REPO_ROOT, 'charts/dynamo-kv');
export const INSTALL_HELM = resolve(REPO_ROOT, 'hack/install-helm.sh');
/** Release name and namespace renderChart uses unless told otherwise (`helm install dynamo charts/dynamo-kv`). */
export const RELEASE = 'dynamo';
export const NAMESPACE = 'dynamo-system';
/** Long enough for hack/install-helm.sh's first download on a slow machine; use it as the hook timeout. */
export const HELM_INSTALL_TIMEOUT_MS = 300_000;

/** A rendered Kubernetes object, typed only as far as the tests read it. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: objects of every kind; each test narrows what it reads
  [field: string]: any;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** Another copy of the chart (tests of files the chart does not ship). */
  chartDir?: string;
  /** Render the crds/ directory too (the default). */
  includeCrds?: boolean;
}

let binDir: Promise<string> | undefined;

/** Directory holding helm and kubectl: that of $HELM when set, else hack/install-helm.sh's (installing once). */
export function helmBinDir(): Promise<string> {
  binDir ??= process.env.HELM
    ? Promise.resolve(dirname(process.env.HELM))
    : run('bash', [INSTALL_HELM], {
        env: { ...process.env, CI: 'true' },
        timeout: HELM_INSTALL_TIMEOUT_MS,
      }).then(({ stdout }) => {
        const dir = stdout.trim().split('\n').pop();
        if (!dir) throw new Error('hack/install-helm.sh printed no directory');
        return dir;
      });
  return binDir;
}

/** Path of the helm binary. */
export async function helmPath(): Promise<string> {
  return process.env.HELM ?? resolve(await helmBinDir(), 'helm');
}

/** Path of the kubectl binary that comes with helm (v1.31). */
export async function kubectlPath(): Promise<string> {
  return resolve(await helmBinDir(), 'kubectl');
}

/** Runs helm; rejects with its output when it exits non-zero. */
export async function helm(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const bin = await helmPath();
  try {
    return await run(bin, args, { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`helm ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** `--set key=value` arguments (helm types the values: true, 2 and "x" become a boolean, a number and a string). */
export function setArgs(values: Record<string, string>): string[] {
  return Object.entries(values).flatMap(([key, value]) => ['--set', `${key}=${value}`]);
}

/** Parses a multi-document YAML stream, skipping empty documents. */
export function parseObjects(text: string): K8sObject[] {
  return yaml.loadAll(text).filter((doc): doc is K8sObject => doc !== null && typeof doc === 'object');
}

/**
 * `helm template` of the chart with the CRD (--include-crds), as `helm install dynamo charts/dynamo-kv -n
 * dynamo-system` would create it: the YAML stream and its objects.
 */
export async function renderChart(
  values: Record<string, string> = {},
  options: RenderOptions = {},
): Promise<{ yaml: string; objects: K8sObject[] }> {
  const args = [
    'template',
    options.release ?? RELEASE,
    options.chartDir ?? CHART_DIR,
    '--namespace',
    options.namespace ?? NAMESPACE,
    ...(options.includeCrds === false ? [] : ['--include-crds']),
    ...setArgs(values),
  ];
  const { stdout } = await helm(args);
  return { yaml: stdout, objects: parseObjects(stdout) };
}
