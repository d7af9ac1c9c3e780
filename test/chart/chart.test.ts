/**
 * The Helm chart, rendered by a real helm (hack/install-helm.sh): lint-clean, the objects `helm install`
 * creates, least-privilege RBAC, the operator's Deployment, and the optional monitors and dashboard.
 */
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yaml from 'js-yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CHART_DIR,
  HELM_INSTALL_TIMEOUT_MS,
  helm,
  helmBinDir,
  type K8sObject,
  NAMESPACE,
  RELEASE,
  renderChart,
  setArgs,
} from './render.js';

const OPERATOR = `${RELEASE}-dynamo-kv-operator`;
const CLUSTER_SCOPED_KINDS = new Set(['CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);
/** Every optional part switched on. */
const ALL_ON = {
  'monitoring.nodes.enabled': 'true',
  'monitoring.operator.enabled': 'true',
  'grafana.dashboard.enabled': 'true',
};

function find(objects: K8sObject[], kind: string, name?: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = find(objects, kind, name);
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0]!;
}

function operatorContainer(objects: K8sObject[]) {
  const deployment = only(objects, 'Deployment', OPERATOR);
  return deployment.spec.template.spec.containers.find((c: { name: string }) => c.name === 'operator');
}

function envOf(container: { env: { name: string; value?: string; valueFrom?: unknown }[] }, name: string) {
  return container.env.find((e) => e.name === name);
}

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** "group/resource" → verbs granted, over every rule of the given roles. */
function grants(roles: K8sObject[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const role of roles)
    for (const rule of role.rules as PolicyRule[])
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? []) {
          const key = `${group}/${resource}`;
          const verbs = out.get(key) ?? new Set<string>();
          for (const v of rule.verbs) verbs.add(v);
          out.set(key, verbs);
        }
  return out;
}

const OWNED = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
/** The most the operator's cluster-or-namespace role may grant, by group/resource. */
const CONTROLLER_GRANTS: Record<string, string[]> = {
  'dynamokv.io/dynamoclusters': ['get', 'list', 'watch', 'update', 'patch'],
  'dynamokv.io/dynamoclusters/status': ['get', 'update', 'patch'],
  'dynamokv.io/dynamoclusters/finalizers': ['update'],
  'apps/statefulsets': OWNED,
  '/services': OWNED,
  '/configmaps': OWNED,
  'policy/poddisruptionbudgets': OWNED,
  'networking.k8s.io/networkpolicies': OWNED,
  // The context, token and CA Secrets: created once; the node certificates: applied (patch). Never listed,
  // watched or updated.
  '/secrets': ['get', 'create', 'patch'],
  // cert-manager mode: a Certificate per node.
  'cert-manager.io/certificates': ['get', 'create', 'patch', 'delete'],
  '/pods': ['get', 'list', 'watch', 'delete'],
  '/persistentvolumeclaims': ['get', 'list', 'delete'],
  '/events': ['create', 'patch'],
  'events.k8s.io/events': ['create', 'patch'],
};
const LEADER_ELECTION_GRANTS: Record<string, string[]> = {
  'coordination.k8s.io/leases': ['get', 'create', 'update'],
};

function asRecord(g: Map<string, Set<string>>): Record<string, string[]> {
  return Object.fromEntries([...g].map(([k, v]) => [k, [...v].sort()]));
}

function sorted(r: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, [...v].sort()]));
}

describe('the dynamo-kv Helm chart', () => {
  let defaults: K8sObject[];
  let allOn: K8sObject[];
  let namespaced: K8sObject[];

  beforeAll(async () => {
    await helmBinDir();
    [defaults, allOn, namespaced] = await Promise.all([
      renderChart().then((r) => r.objects),
      renderChart(ALL_ON).then((r) => r.objects),
      renderChart({ ...ALL_ON, 'operator.scope': 'namespace' }).then((r) => r.objects),
    ]);
  }, HELM_INSTALL_TIMEOUT_MS);

  it('passes helm lint --strict with no errors or warnings, with the defaults and with every option on', async () => {
    for (const values of [
      {},
      ALL_ON,
      { ...ALL_ON, 'operator.scope': 'namespace', 'operator.replicas': '2' },
    ]) {
      const { stdout, stderr } = await helm(['lint', '--strict', CHART_DIR, ...setArgs(values)]);
      const output = stdout + stderr;
      expect(output, JSON.stringify(values)).not.toMatch(/\[(ERROR|WARNING)\]/);
      expect(output).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('renders the CRD, the operator, its ServiceAccount, Service and RBAC, and nothing optional by default', () => {
    const crd = only(defaults, 'CustomResourceDefinition', 'dynamoclusters.dynamokv.io');
    expect(crd.spec.group).toBe('dynamokv.io');
    expect(crd.spec.names).toMatchObject({ kind: 'DynamoCluster', plural: 'dynamoclusters' });
    expect(crd.spec.names.shortNames).toContain('dyn');
    expect(crd.spec.versions.map((v: { name: string }) => v.name)).toContain('v1alpha1');

    const kinds = defaults.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        'CustomResourceDefinition/dynamoclusters.dynamokv.io',
        `ClusterRole/${OPERATOR}`,
        `ClusterRoleBinding/${OPERATOR}`,
        `Deployment/${OPERATOR}`,
        `Role/${OPERATOR}-leader-election`,
        `RoleBinding/${OPERATOR}-leader-election`,
        `Service/${OPERATOR}`,
        `ServiceAccount/${OPERATOR}`,
      ].sort(),
    );
  });

  it('gives every object the chart labels and puts every namespaced object in the release namespace', () => {
    for (const o of allOn.filter((x) => x.kind !== 'CustomResourceDefinition')) {
      const where = `${o.kind}/${o.metadata.name}`;
      expect(o.metadata.labels, where).toMatchObject({
        'app.kubernetes.io/name': 'dynamo-kv',
        'app.kubernetes.io/instance': RELEASE,
        'app.kubernetes.io/managed-by': 'Helm',
      });
      if (CLUSTER_SCOPED_KINDS.has(o.kind)) expect(o.metadata.namespace, where).toBeUndefined();
      else expect(o.metadata.namespace, where).toBe(NAMESPACE);
    }
  });

  it('grants the operator no wildcard and nothing beyond what it needs', () => {
    for (const objects of [defaults, namespaced]) {
      const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
      expect(roles.length).toBeGreaterThan(0);
      for (const role of roles)
        for (const rule of role.rules as PolicyRule[]) {
          const where = `${role.kind}/${role.metadata.name}: ${JSON.stringify(rule)}`;
          for (const field of [rule.apiGroups, rule.resources, rule.verbs])
            expect(field ?? [], where).not.toContain('*');
          expect(rule.nonResourceURLs, where).toBeUndefined();
          expect(rule.resources?.length ?? 0, where).toBeGreaterThan(0);
          expect(rule.verbs, where).not.toContain('escalate');
          expect(rule.verbs, where).not.toContain('bind');
          expect(rule.verbs, where).not.toContain('impersonate');
        }
      const controller = roles.filter((r) => r.metadata.name === OPERATOR);
      expect(asRecord(grants(controller))).toEqual(sorted(CONTROLLER_GRANTS));
      const election = roles.filter((r) => r.metadata.name === `${OPERATOR}-leader-election`);
      expect(election.map((r) => r.kind)).toEqual(['Role']);
      expect(election[0]!.metadata.namespace).toBe(NAMESPACE);
      expect(asRecord(grants(election))).toEqual(sorted(LEADER_ELECTION_GRANTS));
    }
  });

  it('binds the roles to the operator ServiceAccount, which the Deployment runs as', () => {
    for (const objects of [defaults, namespaced]) {
      const sa = only(objects, 'ServiceAccount');
      const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding');
      expect(bindings).toHaveLength(2);
      for (const b of bindings) {
        expect(b.subjects).toEqual([
          { kind: 'ServiceAccount', name: sa.metadata.name, namespace: NAMESPACE },
        ]);
        const role = only(objects, b.roleRef.kind, b.roleRef.name);
        expect(b.kind).toBe(`${role.kind}Binding`);
      }
      const pod = only(objects, 'Deployment', OPERATOR).spec.template.spec;
      expect(pod.serviceAccountName).toBe(sa.metadata.name);
      expect(pod.automountServiceAccountToken).not.toBe(false);
    }
  });

  it('watches every namespace by default and only the release namespace with operator.scope=namespace', () => {
    const clusterWide = operatorContainer(defaults);
    expect(envOf(clusterWide, 'WATCH_NAMESPACE')).toEqual({ name: 'WATCH_NAMESPACE', value: '' });
    expect(find(defaults, 'ClusterRole', OPERATOR)).toHaveLength(1);

    const local = operatorContainer(namespaced);
    expect(envOf(local, 'WATCH_NAMESPACE')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'metadata.namespace' },
    });
    expect(find(namespaced, 'ClusterRole')).toHaveLength(0);
    expect(find(namespaced, 'ClusterRoleBinding')).toHaveLength(0);
    expect(only(namespaced, 'Role', OPERATOR).metadata.namespace).toBe(NAMESPACE);
    expect(only(namespaced, 'PodMonitor').spec.namespaceSelector).toEqual({ matchNames: [NAMESPACE] });
    expect(only(allOn, 'PodMonitor').spec.namespaceSelector).toEqual({ any: true });
  });

  it('runs the operator from the image as a non-root, read-only, leader-electing Deployment', async () => {
    const deployment = only(defaults, 'Deployment', OPERATOR);
    const pod = deployment.spec.template.spec;
    const container = operatorContainer(defaults);
    expect(container.image).toBe('dynamo-kv:0.1.0');
    expect(container.command).toEqual(['node', 'dist/operator/src/main.js']);
    expect(envOf(container, 'POD_NAMESPACE')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'metadata.namespace' },
    });
    expect(envOf(container, 'POD_NAME')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container.resources.requests).toBeDefined();
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });

    // The selector picks the operator's pods only, never the data-plane pods (component=node).
    const selector = deployment.spec.selector.matchLabels;
    expect(selector['app.kubernetes.io/component']).toBe('operator');
    expect(deployment.spec.template.metadata.labels).toMatchObject(selector);
    expect(only(defaults, 'Service', OPERATOR).spec.selector).toEqual(selector);

    const { objects } = await renderChart({
      'operator.replicas': '2',
      'image.repository': 'registry.example/dynamo-kv',
      'image.tag': 'e2e',
      'image.pullPolicy': 'Never',
      'operator.nodeSelector.kubernetes\\.io/os': 'linux',
      'operator.tolerations[0].key': 'dedicated',
      'operator.tolerations[0].operator': 'Exists',
      'operator.resources.limits.memory': '512Mi',
      'operator.extraEnv[0].name': 'DYNAMO_LOG_LEVEL',
      'operator.extraEnv[0].value': 'debug',
      'imagePullSecrets[0].name': 'regcred',
    });
    const custom = only(objects, 'Deployment', OPERATOR);
    const c = operatorContainer(objects);
    expect(custom.spec.replicas).toBe(2);
    expect(c.image).toBe('registry.example/dynamo-kv:e2e');
    expect(c.imagePullPolicy).toBe('Never');
    expect(c.resources.limits.memory).toBe('512Mi');
    expect(envOf(c, 'DYNAMO_LOG_LEVEL')?.value).toBe('debug');
    expect(custom.spec.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(custom.spec.template.spec.tolerations).toEqual([{ key: 'dedicated', operator: 'Exists' }]);
    expect(custom.spec.template.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
  });

  it('renders the PodMonitor, ServiceMonitor and dashboard ConfigMap only when enabled', () => {
    for (const kind of ['PodMonitor', 'ServiceMonitor']) expect(find(defaults, kind)).toHaveLength(0);
    expect(find(defaults, 'ConfigMap')).toHaveLength(0);

    const pods = only(allOn, 'PodMonitor');
    expect(pods.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(pods.spec.selector.matchLabels).toEqual({
      'app.kubernetes.io/name': 'dynamo-kv',
      'app.kubernetes.io/component': 'node',
    });
    // Nodes serve HTTPS by default (spec.tls), each cluster with its own CA.
    expect(pods.spec.podMetricsEndpoints).toEqual([
      expect.objectContaining({
        port: 'http',
        path: '/metrics',
        scheme: 'https',
        tlsConfig: { insecureSkipVerify: true },
      }),
    ]);

    const operator = only(allOn, 'ServiceMonitor');
    expect(operator.apiVersion).toBe('monitoring.coreos.com/v1');
    const service = only(allOn, 'Service', OPERATOR);
    // A ServiceMonitor selects Services by their labels.
    expect(service.metadata.labels).toMatchObject(operator.spec.selector.matchLabels);
    expect(operator.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
    expect(service.spec.ports).toEqual([expect.objectContaining({ name: 'http', targetPort: 'http' })]);

    const dashboard = only(allOn, 'ConfigMap', `${RELEASE}-dynamo-kv-dashboard`);
    expect(dashboard.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(dashboard.data['dynamo.json'])).toEqual(
      JSON.parse(readFileSync(resolve(CHART_DIR, 'dashboards/dynamo.json'), 'utf8')),
    );
  });

  it('adds the Prometheus selector labels to the monitors', async () => {
    const { objects } = await renderChart({
      ...ALL_ON,
      'monitoring.nodes.labels.release': 'kube-prometheus-stack',
      'monitoring.operator.labels.release': 'kube-prometheus-stack',
    });
    for (const kind of ['PodMonitor', 'ServiceMonitor'])
      expect(only(objects, kind).metadata.labels?.release).toBe('kube-prometheus-stack');
  });

  it('refuses an unknown operator.scope', async () => {
    await expect(renderChart({ 'operator.scope': 'everywhere' })).rejects.toThrow(/operator\.scope/);
  });

  it('tells the user how to create, watch, reach and use a cluster after install', async () => {
    // helm template never renders NOTES.txt; a scratch copy of the chart renders it through tpl instead.
    const dir = mkdtempSync(join(tmpdir(), 'dynamo-chart-notes-'));
    try {
      const chart = join(dir, 'dynamo-kv');
      cpSync(CHART_DIR, chart, { recursive: true });
      renameSync(join(chart, 'templates/NOTES.txt'), join(chart, 'notes.txt'));
      writeFileSync(
        join(chart, 'templates/notes.yaml'),
        'notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n',
      );
      const render = async (values: Record<string, string>) => {
        const args = ['template', RELEASE, chart, '-n', NAMESPACE, '--show-only', 'templates/notes.yaml'];
        const { stdout } = await helm([...args, ...setArgs(values)]);
        return (yaml.load(stdout) as { notes: string }).notes;
      };
      const notes = await render({});
      expect(notes).toContain('kubectl apply -f examples/cluster.yaml');
      expect(notes).toContain('kubectl get dyn');
      expect(notes).toContain('kubectl port-forward svc/demo 8080:8080');
      // TLS and tokens are on by default: the token and CA from the operator's Secrets, then HTTPS.
      expect(notes).toContain(
        "export DYNAMO_TOKEN=$(kubectl get secret demo-auth -o jsonpath='{.data.admin-token}' | base64 -d)",
      );
      expect(notes).toContain(
        "kubectl get secret demo-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > demo-ca.crt",
      );
      expect(notes).toMatch(
        /curl --cacert demo-ca.crt -H "Authorization: Bearer \$DYNAMO_TOKEN" -X PUT .*https:\/\/localhost:8080\/buckets\/demo\/keys\/greeting/,
      );
      expect(notes).toMatch(
        /curl --cacert demo-ca.crt .* -i https:\/\/localhost:8080\/buckets\/demo\/keys\/greeting/,
      );
      expect(notes).toContain(`deployment/${OPERATOR}`);
      expect(notes).not.toContain('<no value>');
      const local = await render({ ...ALL_ON, 'operator.scope': 'namespace' });
      expect(local).toContain(`kubectl apply -n ${NAMESPACE} -f examples/cluster.yaml`);
      expect(local).toContain(`kubectl port-forward -n ${NAMESPACE} svc/demo 8080:8080`);
      expect(local).toContain(`kubectl get secret -n ${NAMESPACE} demo-auth`);
      expect(local).toContain('PodMonitor');
      expect(local).not.toContain('<no value>');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
