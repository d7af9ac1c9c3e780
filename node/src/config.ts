/**
 * Every setting of a node in one table: name, flag, environment variable, default and meaning.
 * Precedence: defaults < environment < command-line flags. README's configuration table is checked against it.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { InvalidRequestError } from './errors.js';

export interface NodeConfig {
  nodeId: string;
  clusterName: string;
  httpHost: string;
  httpPort: number;
  httpRequestTimeoutMs: number;
  httpMaxConnections: number;
  peerHost: string;
  peerPort: number;
  advertiseAddress: string;
  advertiseHttp: string;
  members: string;
  seeds: string;
  bootstrap: boolean;
  contextSecretFile: string;
  authTokensFile: string;
  tlsCert: string;
  tlsKey: string;
  tlsCa: string;
  httpTlsCert: string;
  httpTlsKey: string;
  httpClientCa: string;
  adminHost: string;
  adminPort: number;
  gossipIntervalMs: number;
  phiThreshold: number;
  clusterFile: string;
  tokens: number;
  initialTokens: string;
  rejoinAfterLeave: boolean;
  ringSettleMs: number;
  streamMibPerSecond: number;
  rack: string;
  dataDir: string;
  syncWrites: boolean;
  maxValueBytes: number;
  defaultN: number;
  defaultR: number;
  defaultW: number;
  requestTimeoutMs: number;
  clockMaxEntries: number;
  maxSiblings: number;
  clockPruneAgeMs: number;
  propsSyncIntervalMs: number;
  hintWindowMs: number;
  cleanupIntervalMs: number;
  tombstoneGraceMs: number;
  tombstoneReapIntervalMs: number;
  antiEntropyIntervalMs: number;
  merkleDepth: number;
  hintRatePerSecond: number;
  hintDeliveryIntervalMs: number;
  ttlSweepIntervalMs: number;
  logLevel: string;
  terminationMessageFile: string;
}

type Kind = 'string' | 'int' | 'bool';

export interface Setting {
  key: keyof NodeConfig;
  flag: string;
  env: string;
  kind: Kind;
  /** Default as shown in docs; a function when it depends on other settings. */
  default: string | number | boolean | ((c: NodeConfig) => string);
  doc: string;
  min?: number;
  max?: number;
}

export const SETTINGS: readonly Setting[] = [
  {
    key: 'nodeId',
    flag: 'node-id',
    env: 'DYNAMO_NODE_ID',
    kind: 'string',
    default: () => hostname(),
    doc: "This node's unique id in the cluster (a StatefulSet pod name in Kubernetes). Default: the host name.",
  },
  {
    key: 'clusterName',
    flag: 'cluster-name',
    env: 'DYNAMO_CLUSTER_NAME',
    kind: 'string',
    default: 'dynamo',
    doc: 'Cluster name; peers with another name are refused.',
  },
  {
    key: 'httpHost',
    flag: 'http-host',
    env: 'DYNAMO_HTTP_HOST',
    kind: 'string',
    default: '0.0.0.0',
    doc: 'Address the client/admin HTTP API binds to.',
  },
  {
    key: 'httpPort',
    flag: 'http-port',
    env: 'DYNAMO_HTTP_PORT',
    kind: 'int',
    default: 8080,
    min: 0,
    max: 65535,
    doc: 'Port of the client HTTP API (and of the admin calls unless --admin-port is set).',
  },
  {
    key: 'httpRequestTimeoutMs',
    flag: 'http-request-timeout-ms',
    env: 'DYNAMO_HTTP_REQUEST_TIMEOUT_MS',
    kind: 'int',
    default: 30000,
    min: 1000,
    doc: 'Longest time a client may take to send a whole request, headers and body (headers alone: a third of it); a slower one gets 408 and is disconnected.',
  },
  {
    key: 'httpMaxConnections',
    flag: 'http-max-connections',
    env: 'DYNAMO_HTTP_MAX_CONNECTIONS',
    kind: 'int',
    default: 4096,
    min: 1,
    doc: 'Most client connections open at once; more are refused.',
  },
  {
    key: 'peerHost',
    flag: 'peer-host',
    env: 'DYNAMO_PEER_HOST',
    kind: 'string',
    default: '0.0.0.0',
    doc: 'Address the node-to-node transport binds to.',
  },
  {
    key: 'peerPort',
    flag: 'peer-port',
    env: 'DYNAMO_PEER_PORT',
    kind: 'int',
    default: 7070,
    min: 0,
    max: 65535,
    doc: 'Port of the node-to-node transport.',
  },
  {
    key: 'advertiseAddress',
    flag: 'advertise',
    env: 'DYNAMO_ADVERTISE',
    kind: 'string',
    default: (c) => `${c.nodeId}:${c.peerPort}`,
    doc: "host:port other nodes use to reach this node's transport. Default: <node-id>:<peer-port>.",
  },
  {
    key: 'advertiseHttp',
    flag: 'advertise-http',
    env: 'DYNAMO_ADVERTISE_HTTP',
    kind: 'string',
    default: (c) => `http://${c.nodeId}:${c.httpPort}`,
    doc: "URL clients use to reach this node's HTTP API (shown in the ring view for client routing). Default: http://<node-id>:<http-port>.",
  },
  {
    key: 'members',
    flag: 'members',
    env: 'DYNAMO_MEMBERS',
    kind: 'string',
    default: '',
    doc: 'Static membership: comma-separated id=host:port of every node, this one included. Empty: a one-node cluster.',
  },
  {
    key: 'seeds',
    flag: 'seeds',
    env: 'DYNAMO_SEEDS',
    kind: 'string',
    default: '',
    doc: 'Gossip membership: comma-separated host:port (transport) of seed nodes to join through. Seeds are contact points only: a node, seed or not, serves once it has heard from a member (so a seed that reaches no other never starts a second ring); only a node started with --bootstrap founds a new cluster. Excludes --members.',
  },
  {
    key: 'tlsCert',
    flag: 'tls-cert',
    env: 'DYNAMO_TLS_CERT',
    kind: 'string',
    default: '',
    doc: "Mutual TLS on the peer port (with --tls-key and --tls-ca): this node's certificate (PEM), whose subject common name must be its --node-id. Peers must present certificates of the same CA; a peer's node id is its certificate's. The files are re-read when they change. Empty: plain TCP.",
  },
  {
    key: 'tlsKey',
    flag: 'tls-key',
    env: 'DYNAMO_TLS_KEY',
    kind: 'string',
    default: '',
    doc: 'Private key (PEM) of --tls-cert.',
  },
  {
    key: 'tlsCa',
    flag: 'tls-ca',
    env: 'DYNAMO_TLS_CA',
    kind: 'string',
    default: '',
    doc: "The cluster CA's certificate (PEM) that peers' certificates must chain to.",
  },
  {
    key: 'httpTlsCert',
    flag: 'http-tls-cert',
    env: 'DYNAMO_HTTP_TLS_CERT',
    kind: 'string',
    default: '',
    doc: 'HTTPS on the client port (with --http-tls-key): the certificate (PEM) clients see. Re-read when it changes. Empty: plain HTTP.',
  },
  {
    key: 'httpTlsKey',
    flag: 'http-tls-key',
    env: 'DYNAMO_HTTP_TLS_KEY',
    kind: 'string',
    default: '',
    doc: 'Private key (PEM) of --http-tls-cert.',
  },
  {
    key: 'httpClientCa',
    flag: 'http-client-ca',
    env: 'DYNAMO_HTTP_CLIENT_CA',
    kind: 'string',
    default: '',
    doc: 'With HTTPS: CA certificate(s) (PEM) of client certificates. A client presenting a certificate of this CA whose subject OU is `read`, `write` or `admin` has that role without a token. Re-read when it changes. Empty: tokens only.',
  },
  {
    key: 'adminHost',
    flag: 'admin-host',
    env: 'DYNAMO_ADMIN_HOST',
    kind: 'string',
    default: '',
    doc: 'Interface of the admin listener (with --admin-port). Empty: the same as --http-host.',
  },
  {
    key: 'adminPort',
    flag: 'admin-port',
    env: 'DYNAMO_ADMIN_PORT',
    kind: 'int',
    default: 0,
    min: 0,
    max: 65535,
    doc: 'A separate admin listener (same TLS and tokens as the client port): when set, calls that need the admin role (bucket props, decommission, member removal, cleanup) are served only there, and the client port answers them 403 `admin_listener`. 0: none, the client port serves them.',
  },
  {
    key: 'authTokensFile',
    flag: 'auth-tokens-file',
    env: 'DYNAMO_AUTH_TOKENS_FILE',
    kind: 'string',
    default: '',
    doc: 'File of client tokens, one `<read|write|admin> <token>` per line (tokens of 16+ characters; re-read when it changes). Set: every API call but /health, /ready and /metrics needs `Authorization: Bearer <token>` with a role that allows it (401/403 otherwise). Empty: the API is open. `dynamo local` makes one.',
  },
  {
    key: 'contextSecretFile',
    flag: 'context-secret-file',
    env: 'DYNAMO_CONTEXT_SECRET_FILE',
    kind: 'string',
    default: '',
    doc: "File holding the cluster's context secret (at least 16 bytes; the same on every node): contexts are HMACs under it, so clients cannot forge them. Empty: a secret derived from --cluster-name, which keeps contexts bound to their key but not unforgeable (a warning is logged). `dynamo local` and the operator generate one.",
  },
  {
    key: 'bootstrap',
    flag: 'bootstrap',
    env: 'DYNAMO_BOOTSTRAP',
    kind: 'bool',
    default: false,
    doc: 'Gossip membership: this node founds a new cluster if, on its first start (empty --data-dir), no seed answers. Set it on one node of a new cluster only, and not again once the cluster exists (the operator and `dynamo local` do so); ignored on a node that has data.',
  },
  {
    key: 'gossipIntervalMs',
    flag: 'gossip-interval-ms',
    env: 'DYNAMO_GOSSIP_INTERVAL_MS',
    kind: 'int',
    default: 1000,
    min: 10,
    doc: 'How often a node gossips with a random member (and bumps its own heartbeat).',
  },
  {
    key: 'phiThreshold',
    flag: 'phi-threshold',
    env: 'DYNAMO_PHI_THRESHOLD',
    kind: 'int',
    default: 8,
    min: 1,
    doc: 'phi-accrual suspicion level above which a member is marked down (8, as Cassandra); it stays in the ring and its writes become hints.',
  },
  {
    key: 'clusterFile',
    flag: 'cluster-file',
    env: 'DYNAMO_CLUSTER_FILE',
    kind: 'string',
    default: '',
    doc: 'JSON file listing members with per-node tokens and racks: [{"id","address","tokens"?: number | string[],"rack"?}]. Overrides --members.',
  },
  {
    key: 'tokens',
    flag: 'tokens',
    env: 'DYNAMO_TOKENS',
    kind: 'int',
    default: 256,
    min: 1,
    doc: 'Virtual-node tokens per node when members do not say otherwise.',
  },
  {
    key: 'initialTokens',
    flag: 'initial-tokens',
    env: 'DYNAMO_INITIAL_TOKENS',
    kind: 'string',
    default: '',
    doc: "Gossip membership: comma-separated tokens (32 hex digits each) this node claims when it first joins (the operator assigns balanced ones). Empty: a node joining an existing ring claims --tokens tokens that balance replica ownership (the first node: tokens derived from its id). Kept in the data directory: later starts reuse the node's tokens.",
  },
  {
    key: 'rejoinAfterLeave',
    flag: 'rejoin-after-leave',
    env: 'DYNAMO_REJOIN_AFTER_LEAVE',
    kind: 'bool',
    default: false,
    doc: 'Gossip membership: a node started on the data directory of a decommission it completed (`left`: its data streamed to the remaining members, its hints handed over) clears that data, keeping only its gossip generation, member table and bucket props, and joins again as a new member (tokens from --initial-tokens, else balanced ones). Without it such a node refuses to start (`decommissioned`). A member removed by an admin without handing over is never cleared (`removed_member`). The operator sets it.',
  },
  {
    key: 'ringSettleMs',
    flag: 'ring-settle-ms',
    env: 'DYNAMO_RING_SETTLE_MS',
    kind: 'int',
    default: 5000,
    min: 0,
    doc: 'A join or decommission waits this long after every live member has learned of it before streaming, so writes routed by the old ring have landed.',
  },
  {
    key: 'streamMibPerSecond',
    flag: 'stream-mib-per-second',
    env: 'DYNAMO_STREAM_MIB_PER_SECOND',
    kind: 'int',
    default: 32,
    min: 0,
    doc: "Most MiB per second of objects a join or decommission moves (so streaming leaves room for clients' requests); 0: no limit.",
  },
  {
    key: 'rack',
    flag: 'rack',
    env: 'DYNAMO_RACK',
    kind: 'string',
    default: '',
    doc: 'Rack or zone label of this node; replicas prefer distinct racks. Gossip membership: fixed at the first start and kept in the data directory, like the tokens (a different value later is logged and not taken).',
  },
  {
    key: 'dataDir',
    flag: 'data-dir',
    env: 'DYNAMO_DATA_DIR',
    kind: 'string',
    default: (c) => `./data/${c.nodeId}`,
    doc: "Directory of this node's LevelDB database. Default: ./data/<node-id>.",
  },
  {
    key: 'syncWrites',
    flag: 'sync-writes',
    env: 'DYNAMO_SYNC_WRITES',
    kind: 'bool',
    default: false,
    doc: "fsync every write before acknowledging it. Off: a write is in LevelDB's log (survives a process crash, not a power loss of all replicas at once), like Cassandra's periodic commit-log sync; on: survives power loss, several times slower.",
  },
  {
    key: 'maxValueBytes',
    flag: 'max-value-bytes',
    env: 'DYNAMO_MAX_VALUE_BYTES',
    kind: 'int',
    default: 1048576,
    min: 1,
    doc: 'Largest value accepted, in bytes; larger gets 413.',
  },
  {
    key: 'defaultN',
    flag: 'default-n',
    env: 'DYNAMO_DEFAULT_N',
    kind: 'int',
    default: 3,
    min: 1,
    doc: 'Replicas per key for buckets without props.',
  },
  {
    key: 'defaultR',
    flag: 'default-r',
    env: 'DYNAMO_DEFAULT_R',
    kind: 'int',
    default: 2,
    min: 1,
    doc: 'Read quorum for buckets without props.',
  },
  {
    key: 'defaultW',
    flag: 'default-w',
    env: 'DYNAMO_DEFAULT_W',
    kind: 'int',
    default: 2,
    min: 1,
    doc: 'Write quorum for buckets without props.',
  },
  {
    key: 'requestTimeoutMs',
    flag: 'request-timeout-ms',
    env: 'DYNAMO_REQUEST_TIMEOUT_MS',
    kind: 'int',
    default: 10000,
    min: 1,
    doc: 'Default time a coordinator waits for a quorum (per request: ?timeout=).',
  },
  {
    key: 'clockMaxEntries',
    flag: 'clock-max-entries',
    env: 'DYNAMO_CLOCK_MAX_ENTRIES',
    kind: 'int',
    default: 50,
    min: 1,
    doc: 'Clock entries kept per object before old value-less entries are pruned.',
  },
  {
    key: 'maxSiblings',
    flag: 'max-siblings',
    env: 'DYNAMO_MAX_SIBLINGS',
    kind: 'int',
    default: 100,
    min: 1,
    doc: 'Most concurrent siblings a client write may leave on a key; a write past it gets 409 too_many_siblings and nothing is written (replication never is refused).',
  },
  {
    key: 'clockPruneAgeMs',
    flag: 'clock-prune-age-ms',
    env: 'DYNAMO_CLOCK_PRUNE_AGE_MS',
    kind: 'int',
    default: 86400000,
    min: 0,
    doc: 'Only clock entries idle longer than this may be pruned.',
  },
  {
    key: 'propsSyncIntervalMs',
    flag: 'props-sync-interval-ms',
    env: 'DYNAMO_PROPS_SYNC_INTERVAL_MS',
    kind: 'int',
    default: 30000,
    min: 100,
    doc: 'How often a node pulls bucket props from a random peer.',
  },
  {
    key: 'antiEntropyIntervalMs',
    flag: 'anti-entropy-interval-ms',
    env: 'DYNAMO_ANTI_ENTROPY_INTERVAL_MS',
    kind: 'int',
    default: 30000,
    min: 10,
    doc: 'How often a node compares its Merkle trees with one other replica (round robin) and repairs the keys that differ.',
  },
  {
    key: 'merkleDepth',
    flag: 'merkle-depth',
    env: 'DYNAMO_MERKLE_DEPTH',
    kind: 'int',
    default: 10,
    min: 1,
    max: 16,
    doc: 'Depth of the Merkle trees (2^depth leaves): deeper trees move fewer keys per difference but exchange more levels.',
  },
  {
    key: 'tombstoneGraceMs',
    flag: 'tombstone-grace-ms',
    env: 'DYNAMO_TOMBSTONE_GRACE_MS',
    kind: 'int',
    default: 864000000,
    min: 0,
    doc: "How long a deleted (or expired) key's tombstone is kept before it may be removed (10 days, as Cassandra's gc_grace_seconds), and then only once every replica holds the same tombstone. Must be at least --hint-window-ms. A replica down longer than this must be wiped before it rejoins, or it can bring deleted values back.",
  },
  {
    key: 'tombstoneReapIntervalMs',
    flag: 'tombstone-reap-interval-ms',
    env: 'DYNAMO_TOMBSTONE_REAP_INTERVAL_MS',
    kind: 'int',
    default: 3600000,
    min: 100,
    doc: 'How often a node looks for tombstones past their grace period.',
  },
  {
    key: 'cleanupIntervalMs',
    flag: 'cleanup-interval-ms',
    env: 'DYNAMO_CLEANUP_INTERVAL_MS',
    kind: 'int',
    default: 60000,
    min: 100,
    doc: 'How often a gossip node checks whether the ring changed since its last cleanup; once no join or decommission is under way and it holds no hints, it deletes the keys it no longer replicates (POST /admin/cleanup runs one at once).',
  },
  {
    key: 'hintWindowMs',
    flag: 'hint-window-ms',
    env: 'DYNAMO_HINT_WINDOW_MS',
    kind: 'int',
    default: 10800000,
    min: 1000,
    doc: 'How long a hint for a replica that missed a write is kept (3 h, as Cassandra) before it may be dropped: an older hint is dropped (counted in dynamo_hints_expired_total) only when a current replica of its key already holds what it carries; otherwise it may be the last copy of a write and is kept and still delivered (dynamo_hints_overdue).',
  },
  {
    key: 'hintRatePerSecond',
    flag: 'hint-rate-per-second',
    env: 'DYNAMO_HINT_RATE_PER_SECOND',
    kind: 'int',
    default: 1000,
    min: 1,
    doc: 'Hints delivered per second to each returning replica, so a node that comes back is not flooded.',
  },
  {
    key: 'hintDeliveryIntervalMs',
    flag: 'hint-delivery-interval-ms',
    env: 'DYNAMO_HINT_DELIVERY_INTERVAL_MS',
    kind: 'int',
    default: 1000,
    min: 10,
    doc: 'How often a node tries to deliver its pending hints to their replicas.',
  },
  {
    key: 'ttlSweepIntervalMs',
    flag: 'ttl-sweep-interval-ms',
    env: 'DYNAMO_TTL_SWEEP_INTERVAL_MS',
    kind: 'int',
    default: 60000,
    min: 100,
    doc: 'How often a node scans its store to purge the bytes of expired values (reads hide them at once).',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: 'DYNAMO_LOG_LEVEL',
    kind: 'string',
    default: 'info',
    doc: 'Log level: fatal, error, warn, info, debug, trace.',
  },
  {
    key: 'terminationMessageFile',
    flag: 'termination-message-file',
    env: 'DYNAMO_TERMINATION_MESSAGE_FILE',
    kind: 'string',
    default: '',
    doc: "File the node writes why it could not start to (`<code>: <message>`, e.g. `token_mismatch: ...`) before it exits: Kubernetes shows it as the container's termination message when it is /dev/termination-log. Empty: none.",
  },
];

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

function parseValue(s: Setting, raw: string, source: string): string | number | boolean {
  if (s.kind === 'string') return raw;
  if (s.kind === 'bool') {
    if (['true', '1', 'yes', 'on', ''].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    throw new InvalidRequestError('invalid_config', `${source}: expected true or false, got "${raw}"`);
  }
  const n = Number(raw);
  const min = s.min ?? Number.MIN_SAFE_INTEGER;
  const max = s.max ?? Number.MAX_SAFE_INTEGER;
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = s.max === undefined ? `>= ${s.min ?? 0}` : `from ${s.min ?? 0} to ${s.max}`;
    throw new InvalidRequestError('invalid_config', `${source}: expected an integer ${range}, got "${raw}"`);
  }
  return n;
}

/** Builds the configuration from flags (name → raw value, as parsed by parseArgs) and the environment. */
export function loadConfig(
  flags: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv = process.env,
): NodeConfig {
  const config = {} as Record<keyof NodeConfig, unknown>;
  const derived: Setting[] = [];
  for (const s of SETTINGS) {
    const flag = flags[s.flag];
    const fromEnv = env[s.env];
    if (flag !== undefined) config[s.key] = parseValue(s, flag === true ? '' : String(flag), `--${s.flag}`);
    else if (fromEnv !== undefined && fromEnv !== '') config[s.key] = parseValue(s, fromEnv, s.env);
    else if (typeof s.default === 'function') derived.push(s);
    else config[s.key] = s.default;
  }
  for (const s of derived)
    config[s.key] = (s.default as (c: NodeConfig) => string)(config as unknown as NodeConfig);
  const c = config as unknown as NodeConfig;
  c.dataDir = resolve(c.dataDir);
  if (!LOG_LEVELS.has(c.logLevel)) {
    const source = flags['log-level'] !== undefined ? '--log-level' : 'DYNAMO_LOG_LEVEL';
    throw new InvalidRequestError('invalid_config', `${source}: unknown level "${c.logLevel}"`);
  }
  if (c.tombstoneGraceMs < c.hintWindowMs) {
    // A hint delivered after its tombstone was removed would bring the deleted value back.
    throw new InvalidRequestError('invalid_config', '--tombstone-grace-ms must be at least --hint-window-ms');
  }
  if (c.defaultR > c.defaultN || c.defaultW > c.defaultN) {
    throw new InvalidRequestError(
      'invalid_config',
      '--default-r and --default-w must not exceed --default-n',
    );
  }
  return c;
}

/** parseArgs option descriptors for every setting. */
export function settingOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const s of SETTINGS) options[s.flag] = { type: s.kind === 'bool' ? 'boolean' : 'string' };
  return options;
}

/** The configuration table in Markdown, as README shows it. */
export function settingsTable(): string {
  const rows = SETTINGS.map((s) => {
    const def = typeof s.default === 'function' ? '(derived)' : `\`${String(s.default)}\``;
    return `| \`--${s.flag}\` | \`${s.env}\` | ${def} | ${s.doc.replace(/\|/g, '\\|')} |`;
  });
  return ['| flag | environment | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
