/** Starts one node: storage, membership, transport, replica, coordinator and the HTTP API, wired together. */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSecureContext } from 'node:tls';
import { type Logger, pino } from 'pino';
import { Authenticator } from './api/auth.js';
import { createHttpServer, type ServerTls } from './api/http.js';
import type { NodeContext } from './api/node-context.js';
import { BucketPropsTable, type StampedProps } from './buckets/props.js';
import type { NodeConfig } from './config.js';
import { Coordinator } from './coordinator/coordinator.js';
import {
  DynamoError,
  InvalidRequestError,
  NotReadyError,
  RemoteError,
  RequestTimeoutError,
  TokenMismatchError,
} from './errors.js';
import { HINTS_KEY_SPACE, HintDelivery, HintQueue, HintRouter } from './handoff/index.js';
import { EntrySigner } from './membership/entry-signing.js';
import { GossipMembership, markedDown } from './membership/gossip.js';
import type { MemberStatus } from './membership/gossip-state.js';
import type { Member, Membership } from './membership/membership.js';
import { KnownMembers, keptRack, nextGeneration } from './membership/persisted.js';
import { loadClusterFile, parseMembers, StaticMembership } from './membership/static.js';
import { NodeMetrics, type PeerErrorKind } from './metrics/metrics.js';
import { checkReply } from './protocol/replies.js';
import { peerRouter } from './protocol/router.js';
import { AntiEntropy, type AntiEntropyRequest } from './repair/index.js';
import { ExpirySweeper } from './replica/expiry-sweeper.js';
import type { InfoReply, ReplicaRequest } from './replica/messages.js';
import { Replica } from './replica/replica.js';
import { TombstoneReaper } from './replica/tombstone-reaper.js';
import { generateTokens, isToken, type Token } from './ring/index.js';
import { WatchedFiles } from './runtime/watched-files.js';
import { ObjectStore } from './storage/store.js';
import { Cleanup } from './streaming/cleanup.js';
import { StaticRebuild } from './streaming/rebuild.js';
import { clearAfterLeave } from './streaming/rejoin.js';
import { type StreamRequest, StreamSource } from './streaming/source.js';
import { loadNodeRecord, type NodeRecord, Streamer } from './streaming/streamer.js';
import { ReplicationWidening } from './streaming/widen.js';
import { TcpTransport } from './transport/tcp.js';
import { PeerTls } from './transport/tls.js';
import { derivedContextSecret } from './version/index.js';

/** The replica requests about objects: a node that has left answers none of them. */
const OBJECT_OPS: ReadonlySet<string> = new Set(['get', 'put', 'merge', 'put.hint', 'hint.store', 'reap']);

export interface RunningNode {
  httpPort: number;
  peerPort: number;
  log: Logger;
  /** Stops serving, waits for in-flight requests (up to a few seconds) and closes the database. */
  close(): Promise<void>;
}

function membersOf(config: NodeConfig): Member[] {
  if (config.clusterFile) return loadClusterFile(config.clusterFile, config.tokens);
  if (config.members) return parseMembers(config.members, config.tokens);
  const self: Member = {
    id: config.nodeId,
    address: config.advertiseAddress,
    tokens: generateTokens(config.nodeId, config.tokens),
  };
  if (config.rack) self.rack = config.rack;
  return [self];
}

/**
 * The cluster's context secret: --context-secret-file (surrounding whitespace trimmed, at least 16
 * bytes), else one derived from the cluster name, with a warning. Throws InvalidRequestError when the
 * file cannot be used.
 */
function loadContextSecret(config: NodeConfig, log: Logger): Buffer {
  if (!config.contextSecretFile) {
    log.warn(
      'no --context-secret-file: contexts are bound to their key but anyone who knows the cluster name can forge them',
    );
    return derivedContextSecret(config.clusterName);
  }
  let text: string;
  try {
    text = readFileSync(config.contextSecretFile, 'utf8').trim();
  } catch (err) {
    throw new InvalidRequestError('invalid_config', `--context-secret-file: ${(err as Error).message}`);
  }
  if (Buffer.byteLength(text) < 16)
    throw new InvalidRequestError('invalid_config', '--context-secret-file must hold at least 16 bytes');
  return Buffer.from(text, 'utf8');
}

/** Mutual TLS for the peer port from --tls-cert, --tls-key and --tls-ca (all or none). */
function peerTls(config: NodeConfig, log: Logger): PeerTls | undefined {
  const files = [config.tlsCert, config.tlsKey, config.tlsCa];
  if (files.every((f) => f === '')) {
    log.warn(
      'no --tls-cert/--tls-key/--tls-ca: the peer port is plain TCP and trusts what peers say they are',
    );
    return undefined;
  }
  if (files.some((f) => f === ''))
    throw new InvalidRequestError('invalid_config', '--tls-cert, --tls-key and --tls-ca go together');
  return new PeerTls({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa }, (err) =>
    log.error({ err: err.message }, 'peer TLS files unusable; keeping the previous ones'),
  );
}

/**
 * HTTPS for the client port from --http-tls-cert and --http-tls-key (both or none), asking for client
 * certificates of --http-client-ca when it is given (a client without one may still send a token).
 */
function httpTls(config: NodeConfig, log: Logger): (ServerTls & { close(): void }) | undefined {
  if (config.httpClientCa && !config.httpTlsCert)
    throw new InvalidRequestError(
      'invalid_config',
      '--http-client-ca needs HTTPS (--http-tls-cert/--http-tls-key)',
    );
  if (!config.httpTlsCert && !config.httpTlsKey) return undefined;
  if (!config.httpTlsCert || !config.httpTlsKey)
    throw new InvalidRequestError('invalid_config', '--http-tls-cert and --http-tls-key go together');
  const paths: Record<string, string> = { cert: config.httpTlsCert, key: config.httpTlsKey };
  if (config.httpClientCa) paths.ca = config.httpClientCa;
  const files = new WatchedFiles(
    paths,
    (pem) => void createSecureContext(pem),
    (err) => log.error({ err: err.message }, 'client TLS files unusable; keeping the previous ones'),
    config.httpClientCa
      ? '--http-tls-cert/--http-tls-key/--http-client-ca'
      : '--http-tls-cert/--http-tls-key',
  );
  const options = () => {
    const { cert, key, ca } = files.current;
    return ca
      ? { cert: cert!, key: key!, ca, requestCert: true, rejectUnauthorized: false }
      : { cert: cert!, key: key! };
  };
  return { options, onChange: (f) => files.onChange(f), close: () => files.close() };
}

/** Starts a listener of the HTTP API; resolves once it listens. */
async function listenHttp(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** JSON lines on stdout: ISO time, level name, node id, and the request id where there is one. */
export function nodeLogger(level: string): Logger {
  return pino({
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/**
 * This node's tokens: those it already claimed (kept in its database), else --initial-tokens, else
 * --tokens derived from its id. Throws InvalidRequestError on malformed --initial-tokens, and
 * TokenMismatchError when the claimed ones are not those --initial-tokens names: the tokens a node
 * was assigned never change, so the data directory is another ring's (invariant 15).
 */
function ownTokens(config: NodeConfig, record: NodeRecord | undefined): Token[] {
  const initial = config.initialTokens ? parseInitialTokens(config.initialTokens) : undefined;
  if (record) {
    if (initial !== undefined) {
      const held = new Set(record.tokens);
      const foreign = initial.filter((t) => !held.has(t)).length;
      if (foreign > 0 || initial.length !== held.size)
        throw new TokenMismatchError(config.nodeId, config.dataDir, held.size, initial.length, foreign);
    }
    return record.tokens;
  }
  return initial ?? generateTokens(config.nodeId, config.tokens);
}

function parseInitialTokens(list: string): Token[] {
  const tokens = list.split(',').map((t) => t.trim().toLowerCase());
  const bad = tokens.find((t) => !isToken(t));
  if (bad !== undefined)
    throw new InvalidRequestError('invalid_config', `--initial-tokens: '${bad}' is not a 32-hex-digit token`);
  if (new Set(tokens).size !== tokens.length)
    throw new InvalidRequestError('invalid_config', '--initial-tokens lists a token twice');
  return tokens;
}

/** Gossip membership for a node started with --seeds, with the tokens and status it starts with. */
function gossipMembership(
  config: NodeConfig,
  log: Logger,
  tokens: Token[],
  status: MemberStatus,
  generation: number,
  request: (peer: string, body: unknown, timeoutMs: number) => Promise<unknown>,
  known: KnownMembers,
  rejoining: boolean,
  bootstrap: boolean,
  tls: PeerTls | undefined,
): GossipMembership {
  if (config.members || config.clusterFile) {
    throw new InvalidRequestError(
      'invalid_config',
      '--seeds (gossip) and --members/--cluster-file (static) exclude each other',
    );
  }
  const seeds = config.seeds
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  return new GossipMembership({
    self: {
      id: config.nodeId,
      address: config.advertiseAddress,
      http: config.advertiseHttp,
      tokens,
      ...(config.rack ? { rack: config.rack } : {}),
      status,
      // A restart is a new incarnation: its entry replaces the old one whatever the old version was.
      generation,
      version: 1,
    },
    cluster: config.clusterName,
    seeds,
    request,
    intervalMs: config.gossipIntervalMs,
    phiThreshold: config.phiThreshold,
    log,
    known: known.entries,
    onChange: (entries) => known.save(entries),
    refuseIfRemoved: rejoining,
    bootstrap,
    wasMember: status === 'up' || status === 'leaving',
    ...(tls ? { signer: new EntrySigner(config.clusterName, tls) } : {}),
  });
}

/** Starts a node with the given configuration; resolves once it serves requests. */
export async function startNode(
  config: NodeConfig,
  log: Logger = nodeLogger(config.logLevel),
): Promise<RunningNode> {
  log = log.child({ node: config.nodeId });
  const contextSecret = loadContextSecret(config, log);
  const tls = peerTls(config, log);
  const clientTls = httpTls(config, log);
  const auth = config.authTokensFile ? new Authenticator(config.authTokensFile, log) : undefined;
  if (!auth) log.warn('no --auth-tokens-file: the HTTP API is open to anyone who can reach it');
  const store = await ObjectStore.open(config.dataDir, { syncWrites: config.syncWrites });
  const indexFile = join(config.dataDir, 'anti-entropy.index');
  let record = config.seeds ? await loadNodeRecord(store) : undefined;
  let tokens: Token[];
  try {
    if (record?.state === 'left') {
      await clearAfterLeave(store, {
        nodeId: config.nodeId,
        dataDir: config.dataDir,
        rejoin: config.rejoinAfterLeave,
        derivedFiles: [indexFile],
        log,
      });
      record = undefined;
    }
    tokens = ownTokens(config, record);
  } catch (err) {
    await store.close();
    throw err;
  }
  // A node that has never finished joining starts as joining; a restarted one as it was.
  const status: MemberStatus =
    record?.state === 'up' || record?.state === 'leaving' ? record.state : 'joining';
  // The transport is made below; gossip only sends once the node has started.
  const generation = config.seeds ? await nextGeneration(store) : 0;
  const known = config.seeds ? await KnownMembers.load(store, log) : undefined;
  const rack = known ? await keptRack(store, config.nodeId, config.rack, known.entries, log) : config.rack;
  // --bootstrap counts only on a first start: a node that was ever up, or knew other members, rejoins
  // the cluster it belonged to (a founder restarted alone must not found a second ring).
  const firstStart = (!record || record.state === 'joining') && (known?.entries.length ?? 0) === 0;
  const gossip = known
    ? gossipMembership(
        { ...config, rack },
        log,
        tokens,
        status,
        generation,
        (peer, body, t) => ask(peer, body as { op: string }, t),
        known,
        record !== undefined,
        config.bootstrap && firstStart,
        tls,
      )
    : undefined;
  const membership: Membership =
    gossip ?? new StaticMembership(config.nodeId, config.clusterName, membersOf(config));
  const props = await BucketPropsTable.load(store, {
    n: config.defaultN,
    r: config.defaultR,
    w: config.defaultW,
    conflict: 'siblings',
    ttl: 0,
  });
  const memberCounts = () => {
    const counts: Record<string, number> = { up: 0, joining: 0, leaving: 0, down: 0 };
    for (const m of membership.members()) {
      const state = membership.state(m.id);
      counts[state] = (counts[state] ?? 0) + 1;
    }
    return counts;
  };
  const hints = await HintQueue.open(store.keySpace(HINTS_KEY_SPACE), {
    windowMs: config.hintWindowMs,
    ratePerSecond: config.hintRatePerSecond,
    redundant: (hint) => hintRouter.redundant(hint),
    onDelivered: (target, n) => metrics.hintsDelivered.inc({ target }, n),
    onExpired: (n) => metrics.hintsExpired.inc(n),
  });
  // The stored hints are counted in the background: a target's are delivered once it is counted.
  hints.loaded().then(
    () => log.debug({ targets: hints.pending().size }, 'stored hints counted'),
    (err) => {
      if (!hints.closed)
        log.error({ err }, 'counting the stored hints failed; they stay stored for the next start');
    },
  );
  const metrics = new NodeMetrics(config.nodeId, {
    storage: { keys: () => store.keyCount, bytes: () => store.approximateBytes() },
    members: memberCounts,
    phis: () => gossip?.phis() ?? new Map(),
    streamRangesPending: () => streamer?.rangesPending() ?? 0,
    merkleIndex: { keys: () => antiEntropy.indexedKeys, bytes: () => antiEntropy.indexBytes },
    hints: () => {
      // Every peer shows, at 0 when it has no hints, so a drained queue reads 0 rather than vanishing.
      const pending = new Map(
        membership
          .members()
          .filter((m) => m.id !== config.nodeId)
          .map((m) => [m.id, 0]),
      );
      for (const [target, n] of hints.pending()) pending.set(target, n);
      return pending;
    },
    overdueHints: () => hints.overdue(),
  });
  const storeHint = async (hint: { target: string; bucket: string; key: string; obj: Buffer }) => {
    await hints.add(hint);
    metrics.hintsStored.inc({ target: hint.target });
  };
  const replica = new Replica(store, props, {
    self: config.nodeId,
    clockMaxEntries: config.clockMaxEntries,
    clockPruneAgeMs: config.clockPruneAgeMs,
    maxSiblings: config.maxSiblings,
    storeHint,
    onSiblingLimit: () => metrics.siblingLimitRejections.inc(),
    onDotCollision: (bucket, key, n) => {
      metrics.dotCollisions.inc(n);
      log.error({ bucket, key, collisions: n }, 'a dot named two different values; both kept as siblings');
    },
  });
  const transport = new TcpTransport({
    self: config.nodeId,
    cluster: config.clusterName,
    host: config.peerHost,
    port: config.peerPort,
    resolve: (peer) => membership.address(peer),
    ...(tls ? { tls } : {}),
    onError: (err, context) => log.debug({ err, context }, 'transport error'),
  });
  /** Every request to a peer, its reply checked against the protocol's schemas (protocol/replies.ts). */
  const ask = (peer: string, req: { op: string; [field: string]: unknown }, timeoutMs: number) =>
    transport.request(peer, req, timeoutMs).then((reply) => checkReply(peer, req.op, reply));
  membership.learnHttp(config.nodeId, config.advertiseHttp);
  const info = (): InfoReply => ({ id: config.nodeId, http: config.advertiseHttp, keys: store.keyCount });
  const onStreamed = (direction: 'in' | 'out', keys: number, bytes: number) => {
    metrics.streamBytes.inc({ direction }, bytes);
    metrics.streamKeys.inc({ direction }, keys);
  };
  const source = new StreamSource(config.nodeId, store, props, (req) => replica.handle(req), onStreamed);
  // Static membership has no join: a node with no data in a cluster that has some is rebuilt first.
  const rebuild = gossip
    ? undefined
    : new StaticRebuild({
        self: config.nodeId,
        store,
        props,
        membership,
        request: (peer, req, timeoutMs) => requestPeer(peer, req, timeoutMs),
        mergeLocal: (req) => replica.handle(req),
        timeoutMs: config.requestTimeoutMs,
        log,
        onStreamed,
      });
  const antiEntropy = new AntiEntropy({
    self: config.nodeId,
    membership,
    props,
    store,
    // (requestPeer is defined below, once the transport listens.)
    request: (peer, req, timeoutMs) => requestPeer(peer, req, timeoutMs),
    mergeLocal: (req) => replica.handle(req),
    depth: config.merkleDepth,
    timeoutMs: config.requestTimeoutMs,
    log,
    indexFile,
    onExchange: (peer, divergent, repaired, bytes, cpuMicros) => {
      metrics.merkleDivergent.set({ peer }, divergent);
      metrics.merkleLastExchange.set({ peer }, Date.now() / 1000);
      metrics.merkleKeysRepaired.inc(repaired);
      metrics.merkleBytes.inc(bytes);
      metrics.merkleExchanges.inc();
      metrics.merkleExchangeCpu.inc(cpuMicros / 1e6);
      if (repaired > 0) log.info({ peer, divergent, repaired, bytes }, 'anti-entropy repaired keys');
    },
    onRebuild: (keys, scannedStore) => {
      metrics.merkleRebuilds.inc({ source: scannedStore ? 'store' : 'index' });
      log.info({ keys, source: scannedStore ? 'store' : 'index' }, 'anti-entropy trees built');
    },
  });
  // The key index a clean shutdown saved, opened before anything can write (the peer port opens next)
  // and loaded with the trees' build, in the background.
  await antiEntropy
    .openIndex()
    .catch((err) =>
      log.warn({ err }, 'could not open the anti-entropy key index; the store will be scanned'),
    );
  await transport.listen(
    peerRouter({
      info,
      stream: (req) => source.handle(req),
      antiEntropy: (req) => antiEntropy.handle(req),
      gossip: (req) => {
        if (!gossip) throw new InvalidRequestError('not_gossiping', 'this node uses static membership');
        return gossip.handle(req);
      },
      replica: async (from, req) => {
        // A node being rebuilt takes writes but answers no read: its empty copy must not count towards R.
        if (req.op === 'get' && rebuild && !rebuild.serving)
          throw new NotReadyError('this replica is being rebuilt and answers no read yet');
        // A node that has left replicates nothing: a write it took now could be the only copy of it on a
        // node that is about to go (its data directory is cleared when it rejoins: --rejoin-after-leave).
        if (gossip?.status === 'removed' && OBJECT_OPS.has(req.op))
          throw new NotReadyError('this node has left the cluster');
        try {
          return await replica.handle(req);
        } catch (err) {
          // The request id ties this line to the coordinator's log of the same client request.
          const rid = 'rid' in req ? req.rid : undefined;
          if (!(err instanceof DynamoError))
            log.error({ err, from, op: req.op, rid }, 'replica request failed');
          throw err;
        }
      },
    }),
  );
  /** Every request to another node: a member held down fails at once instead of after a timeout. */
  const requestPeer = (
    peer: string,
    req: ReplicaRequest | AntiEntropyRequest | StreamRequest,
    timeoutMs: number,
  ) => {
    if (membership.state(peer) === 'down') return Promise.reject(markedDown(peer));
    const end = metrics.peerDuration.startTimer({ op: req.op });
    return ask(peer, req, timeoutMs).then(
      (reply) => {
        end();
        return reply;
      },
      (err: Error) => {
        const kind: PeerErrorKind =
          err instanceof RequestTimeoutError
            ? 'timeout'
            : err instanceof RemoteError
              ? 'remote'
              : 'unavailable';
        metrics.peerErrors.inc({ peer, kind });
        throw err;
      },
    );
  };
  const call = (peer: string, req: ReplicaRequest, timeoutMs: number) =>
    peer === config.nodeId ? replica.handle(req) : requestPeer(peer, req, timeoutMs);
  const hintRouter = new HintRouter({
    self: config.nodeId,
    membership,
    props,
    call,
    timeoutMs: config.requestTimeoutMs,
  });
  const coordinator = new Coordinator({
    membership,
    props,
    call,
    log,
    onReadRepair: (n) => metrics.readRepairs.inc(n),
    onReplicaMissed: (target, bucket, key, obj) =>
      storeHint({ target, bucket, key, obj }).catch((err) =>
        log.error({ err, target }, 'could not store a hint; anti-entropy must repair this replica'),
      ),
  });
  // The trees are built in the background once the node listens (below); exchanges start meanwhile
  // and wait for them, and peers asking are told not_ready.
  antiEntropy.start(config.antiEntropyIntervalMs);
  const reaper = new TombstoneReaper({
    self: config.nodeId,
    store,
    membership,
    props,
    call,
    graceMs: config.tombstoneGraceMs,
    timeoutMs: config.requestTimeoutMs,
    log,
    onReaped: (n) => metrics.tombstonesReaped.inc(n),
  });
  reaper.start(config.tombstoneReapIntervalMs);
  const handoff = new HintDelivery(hints, (target, hint) => hintRouter.send(target, hint), log);
  handoff.start(config.hintDeliveryIntervalMs);
  const peers = () => membership.members().filter((m) => m.id !== config.nodeId);

  async function setProps(stamped: StampedProps): Promise<void> {
    await props.merge(stamped);
    const results = await Promise.allSettled(
      peers().map((m) => ask(m.id, { op: 'props.set', props: stamped }, config.requestTimeoutMs)),
    );
    for (const r of results)
      if (r.status === 'rejected')
        log.warn({ err: r.reason.message }, 'bucket props not pushed to a peer; it will pull them later');
  }

  // Pull props from a random peer now and then, so a node that was down when they changed catches up.
  async function syncProps(): Promise<void> {
    const candidates = peers();
    const peer = candidates[Math.floor(Math.random() * candidates.length)];
    if (!peer) return;
    try {
      const reply = (await ask(peer.id, { op: 'props.all' }, config.requestTimeoutMs)) as {
        props: StampedProps[];
      };
      for (const stamped of reply.props) await props.merge(stamped);
    } catch (err) {
      log.debug({ peer: peer.id, err: (err as Error).message }, 'props sync failed');
    }
  }
  /** Asks peers whose HTTP URL is unknown for it (clients route by the ring view, which shows it). */
  async function learnPeers(timeoutMs: number): Promise<void> {
    const unknown = peers().filter((m) => !m.http);
    await Promise.allSettled(
      unknown.map(async (m) => {
        const reply = (await ask(m.id, { op: 'info' }, timeoutMs)) as InfoReply;
        membership.learnHttp(m.id, reply.http);
      }),
    );
  }

  void syncProps();
  void learnPeers(config.requestTimeoutMs);
  const propsTimer = setInterval(() => {
    void syncProps();
    void learnPeers(config.requestTimeoutMs);
  }, config.propsSyncIntervalMs);
  propsTimer.unref();

  const sweeper = new ExpirySweeper(store, log, (n) => metrics.expiredPurged.inc(n));
  sweeper.start(config.ttlSweepIntervalMs);

  const streamer =
    gossip &&
    new Streamer({
      self: config.nodeId,
      tokens,
      balanceTokens: !record && !config.initialTokens,
      gossipIntervalMs: config.gossipIntervalMs,
      store,
      props,
      gossip,
      hints,
      request: requestPeer,
      mergeLocal: (req) => replica.handle(req),
      defaultN: config.defaultN,
      settleMs: config.ringSettleMs,
      bytesPerSecond: config.streamMibPerSecond * 1024 * 1024,
      timeoutMs: config.requestTimeoutMs,
      log,
      onStreamed,
    });

  await streamer?.load();
  const cleanup = new Cleanup({
    self: config.nodeId,
    store,
    props,
    membership,
    hintsPending: () => [...hints.pending().values()].reduce((a, b) => a + b, 0),
    hintsCounted: () => hints.isLoaded,
    log,
    onDeleted: (n) => metrics.cleanupDeleted.inc(n),
  });
  // Under gossip the ring changes with joins and decommissions; under both, a bucket's n may be lowered.
  cleanup.startAutomatic(config.cleanupIntervalMs);
  const widening = new ReplicationWidening({
    self: config.nodeId,
    store,
    props,
    membership,
    request: requestPeer,
    mergeLocal: (req) => replica.handle(req),
    settleMs: config.ringSettleMs,
    timeoutMs: config.requestTimeoutMs,
    log,
    onStreamed,
  });
  props.onChange(async (bucket, before, after) => {
    // Which peers hold a key in their trees depends on its bucket's n.
    if (after.n !== before.n) antiEntropy.propsChanged();
    if (after.n !== before.n) await widening.changed(bucket, before.n, after.n);
    if (after.n < before.n) cleanup.requestRun();
  });
  await widening.resume();

  let ready = false;
  const ctx: NodeContext = {
    config,
    contextSecret,
    ...(auth ? { auth } : {}),
    membership,
    coordinator,
    props,
    metrics,
    log,
    setProps,
    learnPeers: () => learnPeers(500),
    ready: () =>
      ready && (gossip?.hasJoined ?? true) && (streamer?.serving ?? true) && (rebuild?.serving ?? true),
    notServing: () => {
      if (gossip?.status === 'removed') return 'this node has left the cluster';
      if (gossip && !gossip.hasJoined) return 'this node has not yet heard from its cluster';
      if (streamer?.joining) return 'this node is joining: its ranges are streaming in';
      if (rebuild && !rebuild.serving) return 'this node is being rebuilt from the other members';
      return undefined;
    },
    cleanup,
    ...(streamer ? { streamer } : {}),
    ...(rebuild ? { rebuild } : {}),
    widening,
  };
  // With --admin-port the admin calls have a listener of their own (e.g. on an internal interface).
  const server = createHttpServer(ctx, clientTls, config.adminPort ? 'client' : 'all');
  await listenHttp(server, config.httpPort, config.httpHost);
  const adminServer = config.adminPort ? createHttpServer(ctx, clientTls, 'admin') : undefined;
  if (adminServer) await listenHttp(adminServer, config.adminPort, config.adminHost || config.httpHost);
  ready = true;
  // What takes time with the data size runs after the node listens: /health answers meanwhile, and
  // neither is needed to serve (ctx.ready above: invariants 8, 11 and 12 decide readiness).
  let closing = false;
  store.countKeys().catch((err) => {
    if (!closing) log.error({ err }, 'counting the stored objects failed');
  });
  antiEntropy.rebuild().catch((err) => {
    if (!closing) log.error({ err }, 'building the anti-entropy trees failed; the next exchange retries');
  });
  rebuild?.start();
  if (gossip) {
    try {
      await gossip.join(config.requestTimeoutMs);
    } catch (err) {
      closing = true;
      await antiEntropy.stop();
      server.close();
      adminServer?.close();
      await transport.close();
      await store.close();
      throw err;
    }
    gossip.start();
    if (streamer?.state === 'joining') {
      // Joining waits for the cluster (seeds may answer later), then streams in the background.
      void (async () => {
        while (!gossip.hasJoined) await sleep(config.gossipIntervalMs);
        await streamer.join();
      })().catch((err) => log.error({ err }, 'join failed; restart the node to resume it'));
    } else streamer?.resume();
  }
  const httpPort = (server.address() as AddressInfo).port;
  log.info(
    { httpPort, peerPort: transport.port, members: membership.members().length, dataDir: config.dataDir },
    'node started',
  );

  return {
    httpPort,
    peerPort: transport.port,
    log,
    async close() {
      ready = false;
      closing = true;
      await cleanup.stop();
      await streamer?.stop();
      await rebuild?.stop();
      await widening.stop();
      clearInterval(propsTimer);
      gossip?.stop();
      await antiEntropy.stop();
      await reaper.stop();
      await handoff.stop();
      await sweeper.stop();
      const servers = [server, ...(adminServer ? [adminServer] : [])];
      const closed = Promise.all(
        servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      for (const s of servers) s.closeIdleConnections();
      const grace = setTimeout(() => {
        for (const s of servers) s.closeAllConnections();
      }, 5000);
      await closed;
      clearTimeout(grace);
      // Writes already acknowledged still send to replicas and store hints: let them finish first.
      const left = await coordinator.drain(5000);
      if (left > 0) log.warn({ left }, 'replica calls still running at shutdown');
      await transport.close();
      clientTls?.close();
      auth?.close();
      await known?.settled();
      // Nothing writes any more: the key index saved now spares the next start a scan of the store.
      await antiEntropy
        .saveIndex()
        .catch((err) => log.warn({ err }, 'could not save the anti-entropy key index'));
      await hints.close();
      await store.close();
      log.info('node stopped');
    },
  };
}
