/**
 * The NetworkPolicy builder and spec.network: the peer port admits only the cluster's pods; the HTTP port is open
 * without spec.network.clientFrom and, with it, admits those peers, the cluster's pods and the operator's pods in
 * the operator's namespace. The spec checks refuse what the API server would refuse in a NetworkPolicy peer.
 */
import { describe, expect, it } from 'vitest';
import type { DynamoCluster, DynamoClusterSpecInput, NetworkPeer } from '../../operator/src/api-types.js';
import { buildNetworkPolicy } from '../../operator/src/objects/network-policy.js';
import { parseCidr, parseIp, validateNetwork, validateSpec, withDefaults } from '../../operator/src/spec.js';

function cluster(spec: DynamoClusterSpecInput = {}): DynamoCluster {
  return {
    apiVersion: 'dynamokv.io/v1alpha1',
    kind: 'DynamoCluster',
    metadata: { name: 'demo', namespace: 'apps', uid: 'uid-1' },
    spec,
  };
}

const build = (spec: DynamoClusterSpecInput, operatorNamespace?: string) => {
  const c = cluster(spec);
  return buildNetworkPolicy(c, withDefaults(c.spec), operatorNamespace ? { operatorNamespace } : {});
};

const OWN = {
  podSelector: {
    matchLabels: {
      'app.kubernetes.io/name': 'dynamo-kv',
      'app.kubernetes.io/instance': 'demo',
      'dynamokv.io/cluster': 'demo',
    },
  },
};
const operatorIn = (namespace: string) => ({
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
  podSelector: { matchLabels: { 'app.kubernetes.io/component': 'operator' } },
});
const PEER_RULE = { _from: [OWN], ports: [{ protocol: 'TCP', port: 7070 }] };
const HTTP = [{ protocol: 'TCP', port: 8080 }];

describe('buildNetworkPolicy', () => {
  it('without clientFrom: the peer port from the cluster’s pods only, the HTTP port open', () => {
    const policy = build({});
    expect(policy.metadata).toMatchObject({ name: 'demo-peers-only', namespace: 'apps' });
    expect(policy.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'DynamoCluster', uid: 'uid-1' });
    expect(policy.spec).toEqual({
      podSelector: OWN.podSelector,
      policyTypes: ['Ingress'],
      ingress: [PEER_RULE, { ports: HTTP }],
    });
    // Setting other network fields (none yet) or an absent network section changes nothing.
    expect(build({ network: {} }).spec).toEqual(policy.spec);
  });

  it('with clientFrom: the HTTP port from those peers, the cluster’s pods and the operator', () => {
    const clientFrom: NetworkPeer[] = [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
      {
        namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'In', values: ['a', 'b'] }] },
        podSelector: { matchLabels: { role: 'client' } },
      },
      { podSelector: { matchExpressions: [{ key: 'dynamo-client', operator: 'Exists' }] } },
      { ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.1.0/24'] } },
    ];
    const policy = build({ network: { clientFrom } }, 'dynamo-system');
    expect(policy.spec?.ingress).toEqual([
      PEER_RULE,
      { _from: [OWN, operatorIn('dynamo-system'), ...clientFrom], ports: HTTP },
    ]);
    expect(policy.spec?.podSelector).toEqual(OWN.podSelector);
  });

  it('admits the operator from the cluster’s own namespace when its namespace is not given', () => {
    const policy = build({ network: { clientFrom: [{ podSelector: { matchLabels: { a: 'b' } } }] } });
    expect(policy.spec?.ingress?.[1]?._from?.[1]).toEqual(operatorIn('apps'));
  });

  it('an empty clientFrom admits only the cluster’s pods and the operator', () => {
    const policy = build({ network: { clientFrom: [] } }, 'ops');
    expect(policy.spec?.ingress).toEqual([PEER_RULE, { _from: [OWN, operatorIn('ops')], ports: HTTP }]);
  });

  it('copies only the fields of a peer it knows, and does not share the spec’s objects', () => {
    const labels = { team: 'a' };
    const spec = {
      network: {
        clientFrom: [
          { namespaceSelector: { matchLabels: labels, other: 1 }, extra: true },
          { ipBlock: { cidr: '10.0.0.0/8', note: 'x' } },
        ],
      },
    } as unknown as DynamoClusterSpecInput;
    const from = build(spec, 'ops').spec?.ingress?.[1]?._from;
    expect(from?.slice(2)).toEqual([
      { namespaceSelector: { matchLabels: { team: 'a' } } },
      { ipBlock: { cidr: '10.0.0.0/8' } },
    ]);
    expect(from?.[2]?.namespaceSelector?.matchLabels).not.toBe(labels);
  });

  it('an empty selector (every namespace) stays empty', () => {
    const from = build({ network: { clientFrom: [{ namespaceSelector: {} }] } }, 'ops').spec?.ingress?.[1]
      ?._from;
    expect(from?.[2]).toEqual({ namespaceSelector: {} });
  });
});

describe('spec.network', () => {
  it('defaults: unset stays unset (open), an empty list stays empty', () => {
    expect(withDefaults({}).network).toEqual({});
    expect(withDefaults({ network: {} }).network).toEqual({});
    expect(withDefaults({ network: { clientFrom: [] } }).network).toEqual({ clientFrom: [] });
    const clientFrom = [{ podSelector: {} }];
    expect(withDefaults({ network: { clientFrom } }).network.clientFrom).toEqual(clientFrom);
  });

  it('accepts the peers a NetworkPolicy accepts', () => {
    const clientFrom: NetworkPeer[] = [
      { namespaceSelector: {} },
      { podSelector: { matchLabels: { 'example.com/role': 'client', empty: '' } } },
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
        podSelector: {
          matchExpressions: [
            { key: 'app', operator: 'NotIn', values: ['x'] },
            { key: 'b', operator: 'DoesNotExist', values: [] },
          ],
        },
      },
      { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16', '10.2.3.4/32'] } },
      { ipBlock: { cidr: '0.0.0.0/0' } },
      { ipBlock: { cidr: '2001:db8::/32', except: ['2001:db8:1::/48'] } },
      { ipBlock: { cidr: '::ffff:10.0.0.0/120' } },
    ];
    expect(validateNetwork({ clientFrom })).toEqual([]);
    expect(validateSpec(withDefaults({ network: { clientFrom } }))).toEqual([]);
    expect(validateNetwork({})).toEqual([]);
    expect(validateNetwork({ clientFrom: [] })).toEqual([]);
  });

  it('refuses peers the API server would refuse, naming the field', () => {
    const problems = (peer: unknown) => validateNetwork({ clientFrom: [peer as NetworkPeer] });
    expect(problems({})).toEqual([
      'spec.network.clientFrom[0] must set namespaceSelector, podSelector or ipBlock',
    ]);
    expect(problems({ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} })).toEqual([
      'spec.network.clientFrom[0] must set either ipBlock or selectors (namespaceSelector, podSelector), not both',
    ]);
    expect(problems('monitoring')[0]).toMatch(/clientFrom\[0\] must be an object/);
    expect(problems({ podSelector: { matchLabels: { 'bad key!': 'x' } } })).toEqual([
      "spec.network.clientFrom[0].podSelector.matchLabels has an invalid label key 'bad key!'",
    ]);
    expect(problems({ podSelector: { matchLabels: { a: 'x'.repeat(64) } } })[0]).toMatch(
      /podSelector\.matchLabels\.a must be a label value/,
    );
    expect(problems({ namespaceSelector: { matchLabels: { [`${'a'.repeat(254)}/x`]: 'y' } } })[0]).toMatch(
      /invalid label key/,
    );
    expect(problems({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } })).toEqual([
      'spec.network.clientFrom[0].podSelector.matchExpressions[0].values must not be empty for In',
    ]);
    expect(
      problems({ podSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } }),
    ).toEqual(['spec.network.clientFrom[0].podSelector.matchExpressions[0].values must be empty for Exists']);
    expect(
      problems({ podSelector: { matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] } })[0],
    ).toMatch(/operator must be one of In, NotIn, Exists, DoesNotExist, got 'Gt'/);
    expect(problems({ podSelector: { matchExpressions: [{ key: '', operator: 'Exists' }] } })[0]).toMatch(
      /matchExpressions\[0\]\.key must be a label key/,
    );
    expect(problems({ ipBlock: { cidr: '10.0.0.0' } })).toEqual([
      "spec.network.clientFrom[0].ipBlock.cidr must be a CIDR such as 10.0.0.0/8, got '10.0.0.0'",
    ]);
    expect(problems({ ipBlock: { cidr: '10.0.0.0/33' } })[0]).toMatch(/must be a CIDR/);
    expect(problems({ ipBlock: { cidr: '10.0.0.1/8' } })).toEqual([
      "spec.network.clientFrom[0].ipBlock.cidr '10.0.0.1/8' has address bits set past its prefix /8",
    ]);
    expect(problems({ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } })).toEqual([
      "spec.network.clientFrom[0].ipBlock.except[0] '11.0.0.0/16' must be a smaller range inside cidr '10.0.0.0/8'",
    ]);
    expect(problems({ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/8'] } })[0]).toMatch(/smaller range/);
    expect(problems({ ipBlock: { cidr: '10.0.0.0/8', except: ['2001:db8::/32'] } })[0]).toMatch(
      /smaller range/,
    );
    expect(problems({ ipBlock: { cidr: '10.0.0.0/8', except: ['x'] } })[0]).toMatch(
      /except\[0\] must be a CIDR/,
    );
    // Each peer is checked, and every problem is reported.
    expect(
      validateNetwork({ clientFrom: [{ podSelector: {} }, {}, { ipBlock: { cidr: 'x' } }] }),
    ).toHaveLength(2);
    expect(validateSpec(withDefaults({ network: { clientFrom: [{}] } }))).toEqual([
      'spec.network.clientFrom[0] must set namespaceSelector, podSelector or ipBlock',
    ]);
    expect(validateNetwork({ clientFrom: 'all' as unknown as NetworkPeer[] })).toEqual([
      'spec.network.clientFrom must be a list of NetworkPolicy peers',
    ]);
  });

  it('parses IPv4 and IPv6 addresses and CIDRs', () => {
    expect(parseIp('10.1.2.3')).toEqual({ bits: 32, value: 0x0a010203n });
    expect(parseIp('::1')).toEqual({ bits: 128, value: 1n });
    expect(parseIp('2001:db8::')?.value).toBe(0x20010db8n << 96n);
    expect(parseIp('::ffff:10.0.0.1')?.value).toBe((0xffffn << 32n) | 0x0a000001n);
    expect(parseIp('1:2:3:4:5:6:7:8')?.value).toBe(0x00010002000300040005000600070008n);
    expect(parseIp('fe80::1%eth0')).toBeUndefined();
    expect(parseIp('10.0.0')).toBeUndefined();
    expect(parseCidr('10.0.0.0/8')).toMatchObject({ prefix: 8, canonical: true });
    expect(parseCidr('10.0.0.1/32')).toMatchObject({ prefix: 32, canonical: true });
    expect(parseCidr('2001:db8::1/64')).toMatchObject({ prefix: 64, canonical: false });
    expect(parseCidr('::/0')).toMatchObject({ bits: 128, prefix: 0, canonical: true });
    expect(parseCidr('10.0.0.0/08')).toBeUndefined();
    expect(parseCidr('::/129')).toBeUndefined();
  });
});
