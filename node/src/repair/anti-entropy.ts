/**
 * Merkle-tree anti-entropy. For every other member this node keeps a tree over the keys both replicate
 * (whole ring, leaves by key position), updated on each write. Every interval it compares one peer's tree
 * of this node with its own tree of that peer, level by level, and repairs only the keys whose versions
 * differ, by the normal merge in both directions.
 */
import { createHash, hash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import type { Membership } from '../membership/membership.js';
import type { GetReply, ReplicaRequest } from '../replica/messages.js';
import { hashKey, type Ring } from '../ring/index.js';
import { decodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import { type Clock, compareSiblings, type Sibling } from '../version/index.js';
import { compareLevelByLevelAsync, MerkleTree, pairHash, type TokenRange } from './merkle.js';

const WHOLE_RING: TokenRange = { start: '0'.repeat(32), end: '0'.repeat(32) };

export type AntiEntropyRequest =
  | { op: 'ae.root'; from: string; ring?: string }
  | { op: 'ae.children'; from: string; d: number; indices: number[] }
  | { op: 'ae.keys'; from: string; leaves: number[] };

/**
 * What identifies a version for anti-entropy: its causal history and every value, byte for byte (what
 * sameVersion compares), so two replicas holding different values under one history are found to
 * differ. A 128-bit hash: it only feeds pairHash, which hashes it again with the key.
 */
export function versionDigest(c: Clock): Buffer {
  // One string of every field but the value bytes, then the values: one-shot hashing of one buffer.
  let head = '';
  const parts: Buffer[] = [];
  const add = (s: Sibling) => {
    head += `|${s.contentType.length}:${s.contentType}:${s.lastModified}:${s.expiresAt}:${s.deleted ? 1 : 0}:${s.value.length}`;
    parts.push(s.value);
  };
  for (const e of c.entries) {
    head += `;${e.id}:${e.counter}#${e.values.length}`;
    for (const s of e.values) add(s);
  }
  head += `@${c.anonymous.length}`;
  for (const s of c.anonymous.length > 1 ? [...c.anonymous].sort(compareSiblings) : c.anonymous) add(s);
  return hash('sha256', Buffer.concat([Buffer.from(head), ...parts]), 'buffer').subarray(0, 16);
}

const fingerprints = new WeakMap<Ring, string>();

/** A digest of a ring's members, tokens and racks (cached per Ring object). */
export function ringFingerprint(ring: Ring): string {
  let fp = fingerprints.get(ring);
  if (fp === undefined) {
    const h = createHash('sha256');
    for (const m of ring.members) h.update(`${m.id}|${m.rack ?? ''}|${m.tokens.join(',')};`);
    fp = h.digest('base64url').slice(0, 22);
    fingerprints.set(ring, fp);
  }
  return fp;
}

const objectKey = (bucket: string, key: string) => `${bucket}\u0000${key}`;

/**
 * One peer's tree plus, by leaf, each key's pair hash (pairHash(objectKey, versionDigest)), to list the
 * keys of a differing leaf and to XOR a key's old version out without hashing it again.
 */
class PeerTree {
  readonly tree: MerkleTree;
  readonly leaves = new Map<number, Map<string, Buffer>>();

  constructor(depth: number) {
    this.tree = new MerkleTree(WHOLE_RING, depth);
  }

  set(okey: string, position: string, pair: Buffer | undefined): void {
    const leaf = this.tree.leafIndexOf(position, okey);
    let keys = this.leaves.get(leaf);
    const old = keys?.get(okey);
    if (old && pair && old.equals(pair)) return;
    this.tree.updateLeaf(leaf, old, pair);
    if (pair) {
      if (!keys) {
        keys = new Map();
        this.leaves.set(leaf, keys);
      }
      keys.set(okey, pair);
    } else keys?.delete(okey);
  }
}

export interface AntiEntropyOptions {
  self: string;
  membership: Membership;
  props: BucketPropsTable;
  store: ObjectStore;
  /** Sends a replica or anti-entropy request to a peer. */
  request: (peer: string, req: ReplicaRequest | AntiEntropyRequest, timeoutMs: number) => Promise<unknown>;
  /** Applies a merge to this node's own replica. */
  mergeLocal: (req: ReplicaRequest) => Promise<unknown>;
  depth: number;
  timeoutMs: number;
  log: Logger;
  onExchange?: (peer: string, divergentLeaves: number, keysRepaired: number, bytes: number) => void;
  /** Called after each full build of the trees (a scan of the whole store), with the keys scanned. */
  onRebuild?: (keys: number) => void;
}

export class AntiEntropy {
  private trees = new Map<string, PeerTree>();
  private ring: Ring | undefined;
  private building: Promise<void> | undefined;
  private pendingWrites: Array<[string, string, Clock | undefined]> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private turn = 0;
  private exchanging = false;

  constructor(private readonly opts: AntiEntropyOptions) {
    opts.store.onWrite((bucket, key, _before, after) => this.onWrite(bucket, key, after));
  }

  /** Builds the trees from the store (again when the ring changed). */
  rebuild(): Promise<void> {
    this.building ??= this.build().finally(() => {
      this.building = undefined;
    });
    return this.building;
  }

  private async build(): Promise<void> {
    const ring = this.opts.membership.ring();
    this.pendingWrites = [];
    const trees = new Map<string, PeerTree>();
    let keys = 0;
    for await (const [bucket, key, bytes] of this.opts.store.scan()) {
      this.add(trees, ring, bucket, key, decodeObject(bytes));
      keys++;
    }
    // Writes during the scan are applied on top, so the new trees miss nothing.
    for (const [bucket, key, after] of this.pendingWrites) this.add(trees, ring, bucket, key, after);
    this.pendingWrites = undefined;
    this.trees = trees;
    this.ring = ring;
    this.opts.onRebuild?.(keys);
  }

  /** Puts the key's version in every peer's tree (or takes it out when c is undefined: deleted). */
  private add(
    trees: Map<string, PeerTree>,
    ring: Ring,
    bucket: string,
    key: string,
    c: Clock | undefined,
  ): void {
    const position = hashKey(bucket, key);
    const pref = ring.preferenceList(position, this.opts.props.get(bucket).n);
    if (!pref.includes(this.opts.self)) return;
    const okey = objectKey(bucket, key);
    // One pair hash per write serves every peer's tree.
    const pair = c && pairHash(okey, versionDigest(c));
    for (const peer of pref) {
      if (peer === this.opts.self) continue;
      let t = trees.get(peer);
      if (!t) {
        t = new PeerTree(this.opts.depth);
        trees.set(peer, t);
      }
      t.set(okey, position, pair);
    }
  }

  private onWrite(bucket: string, key: string, after: Clock | undefined): void {
    if (this.pendingWrites) this.pendingWrites.push([bucket, key, after]);
    else if (this.ring) this.add(this.trees, this.ring, bucket, key, after);
  }

  /** Answers a peer's anti-entropy request about its tree here. */
  handle(req: AntiEntropyRequest): unknown {
    const t = this.trees.get(req.from) ?? new PeerTree(this.opts.depth);
    if (req.op === 'ae.root')
      return { root: t.tree.rootHash(), ring: this.ring && ringFingerprint(this.ring) };
    if (req.op === 'ae.children') return { children: req.indices.map((i) => t.tree.childrenOf(req.d, i)) };
    const keys: Array<[string, Buffer]> = [];
    for (const leaf of req.leaves) for (const entry of t.leaves.get(leaf) ?? []) keys.push(entry);
    return { keys };
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Exchanges with the next up peer, round robin. */
  async tick(): Promise<void> {
    if (this.exchanging) return;
    const peers = this.opts.membership
      .members()
      .map((m) => m.id)
      .filter((id) => id !== this.opts.self && this.opts.membership.state(id) === 'up');
    const peer = peers[this.turn++ % Math.max(peers.length, 1)];
    if (!peer) return;
    this.exchanging = true;
    try {
      await this.exchange(peer);
    } catch (err) {
      this.opts.log.debug({ peer, err: (err as Error).message }, 'anti-entropy exchange failed');
    } finally {
      this.exchanging = false;
    }
  }

  /** One exchange with a peer; resolves with the number of keys repaired. */
  async exchange(peer: string): Promise<number> {
    if (this.opts.membership.ring() !== this.ring) await this.rebuild();
    const { self, timeoutMs } = this.opts;
    const ask = (req: AntiEntropyRequest) => this.opts.request(peer, req, timeoutMs);
    const local = this.trees.get(peer) ?? new PeerTree(this.opts.depth);
    const mine = ringFingerprint(this.ring!);
    const { root, ring } = (await ask({ op: 'ae.root', from: self, ring: mine })) as {
      root: Buffer;
      ring?: string;
    };
    // Trees built on different rings disagree about who replicates what: repairing across them would
    // push copies to a node that no longer replicates a key (after its cleanup) and bring back keys
    // deleted meanwhile. Wait until both sides see the same ring.
    if (ring !== undefined && ring !== mine) {
      this.opts.log.debug({ peer }, 'anti-entropy skipped: the peer sees another ring');
      return 0;
    }
    const leaves = await compareLevelByLevelAsync(
      local.tree,
      async (d, indices) =>
        ((await ask({ op: 'ae.children', from: self, d, indices })) as { children: Buffer[][] }).children,
      root,
    );
    let repaired = 0;
    let bytes = 0;
    if (leaves.length > 0) {
      const { keys } = (await ask({ op: 'ae.keys', from: self, leaves })) as {
        keys: Array<[string, Buffer]>;
      };
      const theirs = new Map(keys);
      const ours = new Map<string, Buffer>();
      for (const leaf of leaves) for (const [k, d] of local.leaves.get(leaf) ?? []) ours.set(k, d);
      const differing = new Set<string>();
      for (const [k, d] of ours) if (!theirs.get(k)?.equals(d)) differing.add(k);
      for (const [k, d] of theirs) if (!ours.get(k)?.equals(d)) differing.add(k);
      for (const okey of differing) {
        const nul = okey.indexOf('\u0000');
        const [b, k] = [okey.slice(0, nul), okey.slice(nul + 1)];
        const lww = this.opts.props.get(b).conflict === 'lww';
        const mine = this.opts.store.getRaw(b, k);
        if (mine && ours.has(okey)) {
          await this.opts.request(peer, { op: 'merge', b, k, obj: mine, lww }, timeoutMs);
          bytes += mine.length;
        }
        if (theirs.has(okey)) {
          const { obj } = (await this.opts.request(peer, { op: 'get', b, k }, timeoutMs)) as GetReply;
          if (obj) {
            await this.opts.mergeLocal({ op: 'merge', b, k, obj, lww });
            bytes += obj.length;
          }
        }
        repaired++;
      }
    }
    this.opts.onExchange?.(peer, leaves.length, repaired, bytes);
    return repaired;
  }
}
