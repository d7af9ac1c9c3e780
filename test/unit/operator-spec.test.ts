import { readFileSync } from 'node:fs';
import { loadYaml, type V1CustomResourceDefinition, type V1JSONSchemaProps } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  DEFAULTS,
  MAX_TLS_NODES,
  parseQuantity,
  TLS_MODES,
  VOLUMES_ON_DELETE,
  validateSpec,
  withDefaults,
} from '../../operator/src/spec.js';

const CRD_PATH = new URL('../../crds/dynamokv.io_dynamoclusters.yaml', import.meta.url);

// loadYaml gives the typed model: `default` is `_default`, x-kubernetes-validations is x_kubernetes_validations.
const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(CRD_PATH, 'utf8'));
const version = crd.spec.versions[0]!;
const root = version.schema?.openAPIV3Schema as V1JSONSchemaProps;
const specSchema = root.properties?.spec as V1JSONSchemaProps;
/** The schema at a dotted path under spec. */
function at(path: string): V1JSONSchemaProps {
  let schema = specSchema;
  for (const part of path.split('.')) schema = schema.properties?.[part] as V1JSONSchemaProps;
  return schema;
}

describe('withDefaults', () => {
  it('fills every omitted field, including nested ones', () => {
    expect(withDefaults(undefined)).toEqual(DEFAULTS);
    const spec = withDefaults({ nodes: 5, replication: { n: 5 }, storage: { size: '1Gi' } });
    expect(spec.nodes).toBe(5);
    expect(spec.replication).toEqual({ n: 5, r: 2, w: 2 });
    expect(spec.storage).toEqual({ size: '1Gi', retainOnScaleDown: false, volumesOnDelete: 'Retain' });
    expect(spec.seeds).toBe(3);
  });

  it('matches the defaults in the CRD schema', () => {
    expect(at('nodes')._default).toBe(DEFAULTS.nodes);
    expect(at('image')._default).toBe(DEFAULTS.image);
    expect(at('imagePullPolicy')._default).toBe(DEFAULTS.imagePullPolicy);
    expect(at('tokensPerNode')._default).toBe(DEFAULTS.tokensPerNode);
    expect(at('seeds')._default).toBe(DEFAULTS.seeds);
    expect(at('replication.n')._default).toBe(DEFAULTS.replication.n);
    expect(at('replication.r')._default).toBe(DEFAULTS.replication.r);
    expect(at('replication.w')._default).toBe(DEFAULTS.replication.w);
    expect(at('storage.size')._default).toBe(DEFAULTS.storage.size);
    expect(at('storage.retainOnScaleDown')._default).toBe(DEFAULTS.storage.retainOnScaleDown);
    expect(at('storage.volumesOnDelete')._default).toBe(DEFAULTS.storage.volumesOnDelete);
    expect(at('storage.volumesOnDelete')._enum).toEqual([...VOLUMES_ON_DELETE]);
    expect(at('storage')._default).toMatchObject({ volumesOnDelete: DEFAULTS.storage.volumesOnDelete });
    expect(at('rackTopologyKey')._default).toBe(DEFAULTS.rackTopologyKey);
    expect(at('hintedHandoff.windowSeconds')._default).toBe(DEFAULTS.hintedHandoff.windowSeconds);
    expect(at('antiEntropy.intervalSeconds')._default).toBe(DEFAULTS.antiEntropy.intervalSeconds);
    expect(at('tls.mode')._default).toBe(DEFAULTS.tls.mode);
    expect(at('tls')._default).toEqual({ mode: DEFAULTS.tls.mode });
    expect(at('tls.mode')._enum).toEqual([...TLS_MODES]);
    expect(at('auth.enabled')._default).toBe(DEFAULTS.auth.enabled);
    expect(at('auth')._default).toEqual({ enabled: DEFAULTS.auth.enabled });
  });

  it('turns TLS (operator mode) and client tokens on unless told otherwise', () => {
    expect(withDefaults({}).tls).toEqual({ mode: 'operator' });
    expect(withDefaults({}).auth).toEqual({ enabled: true });
    expect(withDefaults({ tls: { mode: 'disabled' }, auth: { enabled: false } })).toMatchObject({
      tls: { mode: 'disabled' },
      auth: { enabled: false },
    });
    const issuerRef = { name: 'ca-issuer', kind: 'ClusterIssuer' as const };
    expect(withDefaults({ tls: { mode: 'cert-manager', issuerRef } }).tls).toEqual({
      mode: 'cert-manager',
      issuerRef,
    });
  });
});

describe('validateSpec', () => {
  it('accepts the defaults and the example cluster', () => {
    expect(validateSpec(withDefaults({}))).toEqual([]);
    // biome-ignore lint/suspicious/noExplicitAny: YAML
    const example = loadYaml<any>(
      readFileSync(new URL('../../examples/cluster.yaml', import.meta.url), 'utf8'),
    );
    expect(validateSpec(withDefaults(example.spec))).toEqual([]);
    expect(example.spec.nodes).toBe(3);
  });

  it('rejects a volume policy other than Retain or Delete (a CRD older than the operator lets any through)', () => {
    const spec = withDefaults({ storage: { volumesOnDelete: 'Purge' as 'Delete' } });
    expect(validateSpec(spec)).toEqual([
      "spec.storage.volumesOnDelete must be Retain or Delete, got 'Purge'",
    ]);
    expect(validateSpec(withDefaults({ storage: { volumesOnDelete: 'Delete' } }))).toEqual([]);
  });

  it('rejects r or w above n, nodes below n, and n out of range', () => {
    expect(validateSpec(withDefaults({ replication: { n: 3, r: 4 } }))).toEqual([
      'spec.replication.r must be from 1 to n (3), got 4',
    ]);
    expect(validateSpec(withDefaults({ replication: { n: 3, w: 0 } }))).toEqual([
      'spec.replication.w must be from 1 to n (3), got 0',
    ]);
    expect(validateSpec(withDefaults({ nodes: 2 }))).toEqual([
      'spec.nodes (2) must be at least spec.replication.n (3)',
    ]);
    expect(validateSpec(withDefaults({ nodes: 20, replication: { n: 17 } }))[0]).toMatch(
      /n must be an integer from 1 to 16/,
    );
  });

  it('rejects malformed resource quantities (a CRD older than the operator may let them through)', () => {
    expect(validateSpec(withDefaults({ resources: { limits: { memory: 'lots' } } }))).toEqual([
      "spec.resources.limits.memory must be a quantity such as 500m or 512Mi, got 'lots'",
    ]);
    expect(validateSpec(withDefaults({ resources: { requests: { cpu: '1 core' } } }))[0]).toMatch(
      /spec.resources.requests.cpu/,
    );
    const good = { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '1e9', cpu: '2' } };
    expect(validateSpec(withDefaults({ resources: good }))).toEqual([]);
  });

  it('rejects non-positive or malformed sizes and counts', () => {
    expect(validateSpec(withDefaults({ storage: { size: '-1Gi' } }))[0]).toMatch(
      /storage.size must be a positive/,
    );
    expect(validateSpec(withDefaults({ storage: { size: '0' } }))[0]).toMatch(
      /storage.size must be a positive/,
    );
    expect(validateSpec(withDefaults({ nodes: 0, replication: { n: 1, r: 1, w: 1 } }))[0]).toMatch(
      /spec.nodes must be/,
    );
    expect(validateSpec(withDefaults({ tokensPerNode: 0 }))[0]).toMatch(/tokensPerNode/);
    expect(validateSpec(withDefaults({ seeds: 0 }))[0]).toMatch(/seeds/);
    expect(validateSpec(withDefaults({ hintedHandoff: { windowSeconds: 900_000 } }))[0]).toMatch(
      /tombstone grace/,
    );
  });

  it('rejects an unknown TLS mode, cert-manager without an issuer, and too many nodes for the certificate Secret', () => {
    expect(validateSpec(withDefaults({ tls: { mode: 'vault' as never } }))).toEqual([
      "spec.tls.mode must be one of operator, cert-manager, disabled, got 'vault'",
    ]);
    expect(validateSpec(withDefaults({ tls: { mode: 'cert-manager' } }))).toEqual([
      "spec.tls.issuerRef.name must name a cert-manager issuer when spec.tls.mode is 'cert-manager'",
    ]);
    expect(
      validateSpec(
        withDefaults({ tls: { mode: 'cert-manager', issuerRef: { name: 'x', kind: 'Vault' as never } } }),
      ),
    ).toEqual(["spec.tls.issuerRef.kind must be Issuer or ClusterIssuer, got 'Vault'"]);
    expect(validateSpec(withDefaults({ tls: { mode: 'cert-manager', issuerRef: { name: 'x' } } }))).toEqual(
      [],
    );
    const big = { nodes: MAX_TLS_NODES + 1, tokensPerNode: 16 };
    expect(validateSpec(withDefaults(big))).toEqual([
      `spec.nodes must be at most ${MAX_TLS_NODES} with TLS (every node's certificate is in one Secret of at most 1 MiB), got ${MAX_TLS_NODES + 1}`,
    ]);
    expect(validateSpec(withDefaults({ ...big, tls: { mode: 'disabled' } }))).toEqual([]);
    expect(validateSpec(withDefaults({ auth: { enabled: 'yes' as never } }))).toEqual([
      'spec.auth.enabled must be true or false, got yes',
    ]);
  });

  it('accepts label keys as rack keys and refuses anything the pod fieldPath or the API would not take', () => {
    for (const key of ['topology.kubernetes.io/zone', 'rack', 'example.com/my_rack.1']) {
      expect(validateSpec(withDefaults({ rackTopologyKey: key }))).toEqual([]);
    }
    for (const key of ["zone']", 'a/b/c', '/zone', 'Example.com/rack', `${'x'.repeat(64)}`, 'zone-']) {
      expect(validateSpec(withDefaults({ rackTopologyKey: key }))).toEqual([
        `spec.rackTopologyKey must be a label key such as topology.kubernetes.io/zone, got '${key}'`,
      ]);
    }
    // The CRD's own pattern agrees: a kubectl apply with a bad key is refused before the operator sees it.
    const pattern = new RegExp(at('rackTopologyKey').pattern!);
    expect(pattern.test('topology.kubernetes.io/zone')).toBe(true);
    expect(pattern.test("zone']")).toBe(false);
    expect(pattern.test('a/b/c')).toBe(false);
  });

  it('rejects more tokens than the token ConfigMap can hold', () => {
    expect(validateSpec(withDefaults({ nodes: 200, tokensPerNode: 256 }))[0]).toMatch(/at most 28000/);
  });
});

describe('parseQuantity', () => {
  it('reads binary and decimal suffixes', () => {
    expect(parseQuantity('10Gi')).toBe(10 * 2 ** 30);
    expect(parseQuantity('500M')).toBe(5e8);
    expect(parseQuantity('1.5Ki')).toBe(1536);
    expect(parseQuantity('42')).toBe(42);
    expect(parseQuantity('-1Gi')).toBeUndefined();
    expect(parseQuantity('ten')).toBeUndefined();
  });
});

describe('the CRD', () => {
  it('is dynamoclusters.dynamokv.io v1alpha1, short name dyn, with a status subresource', () => {
    expect(crd.metadata?.name).toBe('dynamoclusters.dynamokv.io');
    expect(crd.spec.group).toBe('dynamokv.io');
    expect(crd.spec.names).toMatchObject({
      kind: 'DynamoCluster',
      plural: 'dynamoclusters',
      shortNames: ['dyn'],
    });
    expect(version.name).toBe('v1alpha1');
    expect(version.subresources).toEqual({ status: {} });
  });

  it('prints Nodes, Ready, Phase and Age', () => {
    expect(version.additionalPrinterColumns?.map((c) => c.name)).toEqual(['Nodes', 'Ready', 'Phase', 'Age']);
  });

  it('checks r <= n, w <= n and nodes >= n with CEL rules', () => {
    const rules = specSchema.x_kubernetes_validations?.map((v) => v.rule);
    expect(rules).toEqual(
      expect.arrayContaining([
        'self.replication.r <= self.replication.n',
        'self.replication.w <= self.replication.n',
        'self.nodes >= self.replication.n',
        `self.tls.mode == 'disabled' || self.nodes <= ${MAX_TLS_NODES}`,
      ]),
    );
    expect(at('tls').x_kubernetes_validations?.map((v) => v.rule)).toEqual([
      "self.mode != 'cert-manager' || has(self.issuerRef)",
    ]);
  });

  it('has a schema for every status field the operator writes', () => {
    const status = root.properties?.status?.properties ?? {};
    for (const field of [
      'phase',
      'nodes',
      'readyNodes',
      'members',
      'conditions',
      'observedGeneration',
      'decommissioning',
      'tls',
    ]) {
      expect(status[field], field).toBeDefined();
    }
    // `items` is untyped in the model, so it keeps the YAML's own field names.
    const item = status.conditions?.items as { properties: { type: { enum: string[] } } };
    expect(item.properties.type.enum).toEqual(['Ready', 'Scaling', 'Decommissioning', 'Degraded', 'Valid']);
  });
});
