/**
 * The Helm chart's rendered manifests against a real kube-apiserver: the CRD is created for real, then every
 * other object goes through `kubectl apply --dry-run=server --validate=strict`, so the API server runs its
 * full validation, defaulting and admission (RBAC escalation checks included) on each one without storing it.
 * A typo in a field name, a wrong apiVersion or an invalid value fails here rather than at `helm install`.
 *
 * The Prometheus Operator's ServiceMonitor and PodMonitor have no CRDs on this control plane: stand-ins that
 * accept any spec are installed for them, so those two objects are checked for their group, version, kind and
 * metadata only (their own schema is the Prometheus Operator's to enforce).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ApiextensionsV1Api, CoreV1Api } from '@kubernetes/client-node';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HELM_INSTALL_TIMEOUT_MS,
  helmBinDir,
  type K8sObject,
  kubectlPath,
  NAMESPACE,
  renderChart,
} from '../chart/render.js';
import { waitFor } from '../integration/harness.js';
import { type ControlPlane, startControlPlane } from './control-plane.js';

const BUILD_TIMEOUT_MS = 45 * 60_000;

/** Value sets that between them render every template of the chart. */
const VARIANTS: Record<string, Record<string, string>> = {
  defaults: {},
  'everything on, cluster scope': {
    'monitoring.nodes.enabled': 'true',
    'monitoring.operator.enabled': 'true',
    'grafana.dashboard.enabled': 'true',
    'operator.replicas': '2',
  },
  'everything on, namespace scope': {
    'operator.scope': 'namespace',
    'monitoring.nodes.enabled': 'true',
    'monitoring.operator.enabled': 'true',
    'grafana.dashboard.enabled': 'true',
    'imagePullSecrets[0].name': 'registry',
  },
};

/** A CRD that accepts any spec, for a kind whose real CRD belongs to another project. */
function standInCrd(kind: string, plural: string): K8sObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: 'monitoring.coreos.com',
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
            },
          },
        },
      ],
    },
  };
}

/** `<kind>.<group>/<name>` as `kubectl -o name` prints it. */
function kubectlName(o: K8sObject): string {
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
  return `${o.kind.toLowerCase()}${group ? `.${group}` : ''}/${o.metadata.name}`;
}

/** The documents of a YAML stream, each as text and parsed; empty ones (comments only) are dropped. */
function documents(stream: string): Array<{ text: string; object: K8sObject }> {
  return stream
    .split(/^---[ \t]*$/m)
    .map((text) => ({ text, object: yaml.load(text) as K8sObject | null | undefined }))
    .filter(
      (d): d is { text: string; object: K8sObject } => d.object != null && typeof d.object === 'object',
    );
}

describe('the Helm chart against a real API server (server-side dry run)', () => {
  let cp: ControlPlane;
  let kubectl: string;
  let ext: ApiextensionsV1Api;

  beforeAll(
    async () => {
      // helm first: its first install is a download, the control plane's first start may be a build.
      await helmBinDir();
      cp = await startControlPlane();
      // The kubectl built with the API server (v1.34) when there is one: kubectl supports one minor version of
      // skew, and hack/install-helm.sh's is v1.31.
      const own = join(cp.assets, 'kubectl');
      kubectl = existsSync(own) ? own : await kubectlPath();
      ext = cp.kubeConfig.makeApiClient(ApiextensionsV1Api);
      await cp.kubeConfig
        .makeApiClient(CoreV1Api)
        .createNamespace({ body: { metadata: { name: NAMESPACE } } });
      // Through kubectl: the JS client's model would drop the x-kubernetes-* schema fields.
      const standIns = [
        standInCrd('ServiceMonitor', 'servicemonitors'),
        standInCrd('PodMonitor', 'podmonitors'),
      ];
      const res = await kubectlRun(['create', '-f', '-'], standIns.map((c) => yaml.dump(c)).join('---\n'));
      if (res.code !== 0) throw new Error(`stand-in CRDs: ${res.stderr}`);
    },
    Math.max(BUILD_TIMEOUT_MS, HELM_INSTALL_TIMEOUT_MS),
  );

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  /** kubectl with the control plane's kubeconfig, the YAML on stdin; never throws. */
  async function kubectlRun(
    args: string[],
    stdin: string,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return await new Promise((resolve) => {
      const child = execFile(
        kubectl,
        ['--kubeconfig', cp.kubeconfigPath, ...args],
        { maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr: stderr || (err ? String(err) : '') });
        },
      );
      child.stdin?.end(stdin);
    });
  }

  async function establishedCrds(): Promise<Set<string>> {
    const list = await ext.listCustomResourceDefinition();
    return new Set(
      list.items
        .filter((c) =>
          (c.status?.conditions ?? []).some((k) => k.type === 'Established' && k.status === 'True'),
        )
        .map((c) => c.metadata!.name!),
    );
  }

  it('creates the chart CRD for real, and the API server establishes it', async () => {
    const { yaml: text } = await renderChart();
    const crds = documents(text).filter((d) => d.object.kind === 'CustomResourceDefinition');
    expect(crds.map((c) => c.object.metadata.name)).toEqual(['dynamoclusters.dynamokv.io']);
    const stream = crds.map((c) => c.text).join('---\n');
    const res = await kubectlRun(
      ['apply', '--server-side', '--validate=strict', '-o', 'name', '-f', '-'],
      stream,
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout.trim().split('\n')).toEqual([
      'customresourcedefinition.apiextensions.k8s.io/dynamoclusters.dynamokv.io',
    ]);
    await waitFor(
      'the CRDs to be established',
      async () => {
        const established = await establishedCrds();
        return [
          'dynamoclusters.dynamokv.io',
          'servicemonitors.monitoring.coreos.com',
          'podmonitors.monitoring.coreos.com',
        ].every((n) => established.has(n));
      },
      30_000,
    );
  });

  for (const [variant, values] of Object.entries(VARIANTS)) {
    it(`accepts every other object with ${variant}`, async () => {
      const { yaml: text } = await renderChart(values);
      const docs = documents(text).filter((d) => d.object.kind !== 'CustomResourceDefinition');
      const rest = docs.map((d) => d.object);
      expect(rest.length).toBeGreaterThan(0);
      if (Object.keys(values).length > 0) {
        // The variant really renders the optional objects it is meant to check.
        const kinds = new Set(rest.map((o) => o.kind));
        for (const kind of ['ServiceMonitor', 'PodMonitor', 'ConfigMap']) expect(kinds).toContain(kind);
      }
      // helm's own text, not a re-serialisation: kubectl parses it with Go's YAML rules, as on a real install.
      const stream = docs.map((d) => d.text).join('---\n');
      const res = await kubectlRun(
        ['apply', '--dry-run=server', '--validate=strict', '-n', NAMESPACE, '-o', 'name', '-f', '-'],
        stream,
      );
      // kubectl goes on past a rejected object and reports it on stderr with a non-zero exit.
      expect(res.stderr, 'the API server rejected objects').toBe('');
      expect(res.code).toBe(0);
      const accepted = res.stdout.trim().split('\n').sort();
      expect(accepted).toEqual(rest.map(kubectlName).sort());

      // A dry run stores nothing: none of the objects exists afterwards.
      const check = await kubectlRun(
        ['get', '-n', NAMESPACE, '--ignore-not-found', '-o', 'name', '-f', '-'],
        stream,
      );
      expect(check.code).toBe(0);
      expect(check.stdout.trim()).toBe('');
    });
  }

  it('rejects an object the schema does not allow (the dry run really validates)', async () => {
    const { yaml: text } = await renderChart();
    const deployment = documents(text).find((d) => d.object.kind === 'Deployment');
    expect(deployment).toBeDefined();
    const broken = structuredClone(deployment!.object);
    broken.spec.template.spec.containers[0].imagePullPolcy = 'Always';
    const res = await kubectlRun(
      ['apply', '--dry-run=server', '--validate=strict', '-n', NAMESPACE, '-f', '-'],
      yaml.dump(broken),
    );
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/unknown field "spec.template.spec.containers\[0\].imagePullPolcy"/);
  });
});
