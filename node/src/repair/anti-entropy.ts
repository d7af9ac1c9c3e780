/**
 * Merkle-tree anti-entropy. For every other member this node keeps a tree over the keys both replicate
 * (whole ring, leaves by key position), updated on each write. Every interval it compares one peer's tree
 * of this node with its own tree of that peer, level by level, and repairs only the keys whose versions
 * differ, by the normal merge in both directions.
 *
 * What the trees are made of lives in one KeyIndex (key-index.ts), off the JS heap: per stored key its
 * pair hash, leaf and peer group (the peers, other than this node, of its preference list). The trees
 * themselves are small (2^depth leaves each). The index is filled by one scan of the store, in the
 * background after the node started (peers asking meanwhile are told not_ready); a new ring re-derives
 * every key's group and the trees from the index, in the background and without reading the store.
 * Key lists (ae.keys) are paged: no reply exceeds AE_KEYS_REPLY_BYTES, far below the frame limit.
 *
 * A clean shutdown writes the index to a file (saveIndex) once nothing can write any more; the next start
 * opens and deletes it before anything can write (openIndex) and loads it in the background instead of
 * scanning the store, so only a start after a crash scans the store. Should the file hold what the store lost (a power cut losing LevelDB's unsynced tail),
 * the repair of each differing key re-reads it from the store first, which puts the index right.
 */
import { createHash, hash } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import { NotReadyError } from '../errors.js';
import type { Membership } from '../membership/membership.js';
import type { GetReply, ReplicaRequest } from '../replica/messages.js';
import { hashKey, type Ring } from '../ring/index.js';
import { decodeObject } from '../storage/codec.js';
import type { ObjectStore } from '../storage/store.js';
import { type Clock, compareSiblings, type Sibling } from '../version/index.js';
import { KeyIndex } from './key-index.js';
import { compareLevelByLevelAsync, MerkleTree, pairHash, type TokenRange } from './merkle.js';

const WHOLE_RING: TokenRange = { start: '0'.repeat(32), end: '0'.repeat(32) };
/** Most bytes of keys and pair hashes one ae.keys reply carries (the frame limit is 64 MiB). */
export const AE_KEYS_REPLY_BYTES = 4 * 1024 * 1024;
/** Keys handled between two yields to the event loop while the trees are built. */
const BUILD_CHUNK = 4096;
/** The key index file: magic, format version, tree depth, 2 bytes 0, key count, 4 bytes 0. */
const INDEX_MAGIC = Buffer.from('DKAI', 'latin1');
const INDEX_FORMAT = 1;
const INDEX_HEADER = 16;
/** Per key: key length (u16), leaf (u16), pair hash (16), the key's bytes. */
const INDEX_ENTRY = 20;
/** The file ends with the first 16 bytes of the SHA-256 of everything before. */
const INDEX_TRAILER = 16;
const FILE_BUFFER = 1 << 20;

/** fsync of a directory, so a rename or unlink in it is durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export type AntiEntropyRequest =
  | { op: 'ae.root'; from: string; ring?: string }
  | { op: 'ae.children'; from: string; d: number; indices: number[] }
  /** Keys of the leaves, in order; with after, leaves[0]'s keys after that one (they are listed in key order). */
  | { op: 'ae.keys'; from: string; leaves: number[]; after?: string };

/**
 * A page of keys with their pair hashes. next, when present, says where the listing goes on: at leaf
 * next.leaf (one of the leaves asked for; every leaf before it is complete), after key next.after when
 * given, else from that leaf's first key.
 */
export interface AeKeysReply {
  keys: Array<[string, Buffer]>;
  next?: { leaf: number; after?: string };
}

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
const splitKey = (okey: string): [string, string] => {
  const nul = okey.indexOf('\u0000');
  return [okey.slice(0, nul), okey.slice(nul + 1)];
};
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

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
  /** Bytes of keys per ae.keys reply (default AE_KEYS_REPLY_BYTES; smaller in tests, to see paging). */
  keysReplyBytes?: number;
  /** Keys re-derived between two yields to the event loop on a new ring (default 4096). */
  buildChunk?: number;
  /** Where the key index is kept across a clean shutdown (saveIndex, loadIndex); none: every start scans. */
  indexFile?: string;
  /** After each exchange this node ran: what it found and moved, and the process CPU it took (µs). */
  onExchange?: (
    peer: string,
    divergentLeaves: number,
    keysRepaired: number,
    bytes: number,
    cpuMicros: number,
  ) => void;
  /**
   * Called after each build of the trees, with the keys they cover: from a scan of the store (at start)
   * or, when the ring or a bucket's n changed, from the key index (no store read).
   */
  onRebuild?: (keys: number, scannedStore: boolean) => void;
}

/**
 * Where the trees are: not built (no scan yet), being filled by the scan of the store, being re-derived
 * from the index for a new ring (ids below cursor are done), or built for ring.
 */
type State =
  | { kind: 'empty' }
  | { kind: 'scanning'; ring: Ring; deleted: Set<string> }
  | { kind: 'regrouping'; ring: Ring; cursor: number }
  | { kind: 'built'; ring: Ring };

export class AntiEntropy {
  private index: KeyIndex;
  private trees = new Map<string, MerkleTree>();
  /** Peer groups of the current build: id → the peers whose trees hold a key of that group (0: none). */
  private groupPeers: string[][] = [[]];
  private groupIds = new Map<string, number>();
  private state: State = { kind: 'empty' };
  /** A bucket's n changed: every key's group must be derived again, even on the same ring. */
  private stale = false;
  private building: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private turn = 0;
  private exchanging = false;
  /** Exchanges running (any caller): the index is saved only when none is. */
  private running = 0;
  /** Bumped by every write the index takes: a save that sees it move is abandoned. */
  private writes = 0;
  private stopped = false;
  /** The index file openIndex opened, for the build to load. */
  private indexFileHandle: FileHandle | undefined;
  private readonly emptyTree: MerkleTree;
  private readonly keysReplyBytes: number;

  constructor(private readonly opts: AntiEntropyOptions) {
    this.emptyTree = new MerkleTree(WHOLE_RING, opts.depth);
    this.index = new KeyIndex(this.emptyTree.leafCount);
    this.keysReplyBytes = opts.keysReplyBytes ?? AE_KEYS_REPLY_BYTES;
    opts.store.onWrite((bucket, key, _before, after) => this.onWrite(bucket, key, after));
  }

  /** Keys in the index (every stored object once it is built). */
  get indexedKeys(): number {
    return this.index.size;
  }

  /** Bytes the key index holds, outside the JS heap. */
  get indexBytes(): number {
    return this.index.memoryBytes;
  }

  /** True once the trees are built for the ring they were last asked for. */
  get built(): boolean {
    return this.state.kind === 'built';
  }

  /**
   * Builds the trees: from a scan of the store the first time, else again from the index when the ring
   * (or a bucket's n) changed since. Resolves once they match the current ring.
   */
  rebuild(): Promise<void> {
    this.building ??= this.build().finally(() => {
      this.building = undefined;
    });
    return this.building;
  }

  /** A bucket's n changed: the keys' groups are derived again before the next exchange. */
  propsChanged(): void {
    this.stale = true;
  }

  private current(): Ring | undefined {
    return this.state.kind === 'built' ? this.state.ring : undefined;
  }

  private async build(): Promise<void> {
    const fh = this.indexFileHandle;
    if (fh && this.state.kind === 'scanning') {
      this.indexFileHandle = undefined;
      let loaded = false;
      try {
        loaded = await this.loadIndex(fh, this.state.deleted);
      } catch (err) {
        if (!this.stopped)
          this.opts.log.warn(
            { err: (err as Error).message },
            'anti-entropy key index file unusable; scanning the store',
          );
      } finally {
        await fh.close();
      }
      if (loaded) {
        // Complete, and no key has its group yet: as a re-derivation that has not started.
        this.state = { kind: 'regrouping', ring: this.opts.membership.ring(), cursor: 0 };
        this.opts.log.info({ keys: this.index.size }, 'anti-entropy key index loaded');
      } else {
        // What was taken so far is dropped: the scan reads every write made since the start too.
        this.index = new KeyIndex(this.emptyTree.leafCount);
        this.resetTrees();
        this.state = { kind: 'empty' };
      }
    }
    if (this.state.kind === 'empty') await this.scan(this.opts.membership.ring());
    while (this.stale || this.opts.membership.ring() !== this.current()) {
      this.stale = false;
      await this.regroup(this.opts.membership.ring());
    }
  }

  private resetTrees(): void {
    this.trees = new Map();
    this.groupPeers = [[]];
    this.groupIds = new Map();
  }

  /** Fills the index and the trees from the store; writes meanwhile go straight in (they are newer). */
  private async scan(ring: Ring): Promise<void> {
    const deleted = new Set<string>();
    this.resetTrees();
    this.state = { kind: 'scanning', ring, deleted };
    let keys = 0;
    try {
      for await (const [bucket, key, bytes] of this.opts.store.scan()) {
        if (this.stopped) throw new Error('anti-entropy stopped');
        keys++;
        const okey = objectKey(bucket, key);
        // A key written during the scan is already in with a version at least as new as the snapshot's;
        // one deleted during it must not come back from the snapshot.
        if (deleted.has(okey)) continue;
        const position = hashKey(bucket, key);
        const kb = Buffer.from(okey, 'utf8');
        if (this.index.find(kb) >= 0) continue;
        const pair = pairHash(okey, versionDigest(decodeObject(bytes)));
        const group = this.groupFor(ring, bucket, position);
        const leaf = this.emptyTree.leafIndexOf(position, okey);
        this.index.add(kb, leaf, pair, group);
        this.xor(group, leaf, pair);
      }
    } catch (err) {
      // Start over next time: the index holds only part of the store.
      this.index = new KeyIndex(this.emptyTree.leafCount);
      this.resetTrees();
      this.state = { kind: 'empty' };
      throw err;
    }
    this.state = { kind: 'built', ring };
    this.opts.onRebuild?.(keys, true);
  }

  /** Derives every key's group and the trees for ring again, from the index alone. */
  private async regroup(ring: Ring): Promise<void> {
    this.resetTrees();
    const state: State & { kind: 'regrouping' } = { kind: 'regrouping', ring, cursor: 0 };
    this.state = state;
    const { index } = this;
    // Writes meanwhile update every key below the cursor in full and only the pair of those above it.
    while (state.cursor < index.highWater) {
      const end = Math.min(state.cursor + (this.opts.buildChunk ?? BUILD_CHUNK), index.highWater);
      for (let id = state.cursor; id < end; id++) {
        if (!index.isLive(id)) continue;
        const [bucket, key] = splitKey(index.keyOf(id));
        const group = this.groupFor(ring, bucket, hashKey(bucket, key));
        index.setGroup(id, group);
        this.xor(group, index.leafOf(id), index.pairView(id));
      }
      state.cursor = end;
      if (state.cursor < index.highWater) await yieldToLoop();
      if (this.stopped) throw new Error('anti-entropy stopped');
    }
    this.state = { kind: 'built', ring };
    this.opts.onRebuild?.(index.size, false);
  }

  /** The group of a key at position in bucket on ring: the other replicas, or 0 when this node is not one. */
  private groupFor(ring: Ring, bucket: string, position: string): number {
    const pref = ring.preferenceList(position, this.opts.props.get(bucket).n);
    if (!pref.includes(this.opts.self)) return 0;
    const peers = pref.filter((p) => p !== this.opts.self);
    if (peers.length === 0) return 0;
    const name = peers.join('\n');
    let id = this.groupIds.get(name);
    if (id === undefined) {
      id = this.groupPeers.length;
      this.groupPeers.push(peers);
      this.groupIds.set(name, id);
    }
    return id;
  }

  /** XORs pair into leaf of the tree of every peer in group. */
  private xor(group: number, leaf: number, pair: Buffer): void {
    for (const peer of this.groupPeers[group] ?? []) {
      let tree = this.trees.get(peer);
      if (!tree) {
        tree = new MerkleTree(WHOLE_RING, this.opts.depth);
        this.trees.set(peer, tree);
      }
      tree.updateLeaf(leaf, pair, undefined);
    }
  }

  /** Whether entry id's pair is in the trees now (a regroup has not reached it yet otherwise). */
  private inTrees(id: number): boolean {
    return this.state.kind !== 'regrouping' || id < this.state.cursor;
  }

  private onWrite(bucket: string, key: string, after: Clock | undefined): void {
    this.writes++;
    const state = this.state;
    // Before the scan starts every write is in what it will read.
    if (state.kind === 'empty') return;
    const okey = objectKey(bucket, key);
    const position = hashKey(bucket, key);
    const kb = Buffer.from(okey, 'utf8');
    const id = this.index.find(kb);
    if (after === undefined) {
      if (state.kind === 'scanning') state.deleted.add(okey);
      if (id < 0) return;
      if (this.inTrees(id)) this.xor(this.index.groupOf(id), this.index.leafOf(id), this.index.pairView(id));
      this.index.remove(id);
      return;
    }
    const pair = pairHash(okey, versionDigest(after));
    if (id < 0) {
      const leaf = this.emptyTree.leafIndexOf(position, okey);
      const added = this.index.add(kb, leaf, pair, 0);
      if (!this.inTrees(added)) return;
      const group = this.groupFor(state.ring, bucket, position);
      this.index.setGroup(added, group);
      this.xor(group, leaf, pair);
      return;
    }
    if (!this.inTrees(id)) {
      this.index.setPair(id, pair);
      return;
    }
    const group = this.groupFor(state.ring, bucket, position);
    const old = this.index.groupOf(id);
    if (old === group && this.index.pairEquals(id, pair)) return;
    const leaf = this.index.leafOf(id);
    this.xor(old, leaf, this.index.pairView(id));
    this.index.setPair(id, pair);
    this.index.setGroup(id, group);
    this.xor(group, leaf, pair);
  }

  /** The keys of leaf that peer's tree holds, with their pair hashes (copies), in key order. */
  private keysInLeaf(leaf: number, peer: string): Array<[string, Buffer]> {
    const keys: Array<[string, Buffer]> = [];
    for (const id of this.index.idsInLeaf(leaf)) {
      if (!(this.groupPeers[this.index.groupOf(id)] ?? []).includes(peer)) continue;
      keys.push([this.index.keyOf(id), Buffer.from(this.index.pairView(id))]);
    }
    return keys.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Answers a peer's anti-entropy request about its tree here; not_ready while the trees are built. */
  handle(req: AntiEntropyRequest): unknown {
    const ring = this.current();
    if (!ring) throw new NotReadyError('anti-entropy trees are being built');
    const tree = this.trees.get(req.from) ?? this.emptyTree;
    if (req.op === 'ae.root') return { root: tree.rootHash(), ring: ringFingerprint(ring) };
    if (req.op === 'ae.children') return { children: req.indices.map((i) => tree.childrenOf(req.d, i)) };
    return this.listKeys(req.from, req.leaves, req.after);
  }

  /** One page of the keys of leaves that peer's tree holds, from after (in leaves[0]) when given. */
  private listKeys(peer: string, leaves: number[], after: string | undefined): AeKeysReply {
    const keys: Array<[string, Buffer]> = [];
    let bytes = 0;
    for (const [i, leaf] of leaves.entries()) {
      const inLeaf = this.keysInLeaf(leaf, peer);
      let j = 0;
      if (i === 0 && after !== undefined)
        while (j < inLeaf.length && (inLeaf[j] as [string, Buffer])[0] <= after) j++;
      for (; j < inLeaf.length; j++) {
        const entry = inLeaf[j] as [string, Buffer];
        // The key's UTF-8 bytes, its hash and msgpack's framing of both.
        const size = Buffer.byteLength(entry[0]) + entry[1].length + 8;
        if (keys.length > 0 && bytes + size > this.keysReplyBytes) {
          const last = keys[keys.length - 1] as [string, Buffer];
          return { keys, next: j === 0 ? { leaf } : { leaf, after: last[0] } };
        }
        keys.push(entry);
        bytes += size;
      }
    }
    return { keys };
  }

  /**
   * Writes the key index to the index file (at a clean shutdown, once nothing writes any more): the next
   * start loads it instead of scanning the store. Resolves false, writing nothing, when there is no file
   * to write, the index is incomplete (still scanning), an exchange is running or a write came meanwhile.
   */
  async saveIndex(): Promise<boolean> {
    const file = this.opts.indexFile;
    const kind = this.state.kind;
    if (!file || kind === 'empty' || kind === 'scanning' || this.running > 0) return false;
    const writes = this.writes;
    const tmp = `${file}.tmp`;
    const fh = await open(tmp, 'w');
    let complete = false;
    try {
      const digest = createHash('sha256');
      const buf = Buffer.allocUnsafe(FILE_BUFFER);
      let at = 0;
      const flush = async () => {
        digest.update(buf.subarray(0, at));
        for (let done = 0; done < at; ) done += (await fh.write(buf, done, at - done)).bytesWritten;
        at = 0;
      };
      INDEX_MAGIC.copy(buf, 0);
      buf.writeUInt8(INDEX_FORMAT, 4);
      buf.writeUInt8(this.opts.depth, 5);
      buf.writeUInt16BE(0, 6);
      buf.writeUInt32BE(this.index.size, 8);
      buf.writeUInt32BE(0, 12);
      at = INDEX_HEADER;
      const { index } = this;
      for (let id = 0; id < index.highWater; id++) {
        if (!index.isLive(id)) continue;
        const key = index.keyBytes(id);
        if (at + INDEX_ENTRY + key.length > buf.length) await flush();
        // The index must not change under the loop (nothing writes at shutdown; if something did, give up).
        if (this.writes !== writes) return false;
        buf.writeUInt16BE(key.length, at);
        buf.writeUInt16BE(index.leafOf(id), at + 2);
        index.pairView(id).copy(buf, at + 4);
        key.copy(buf, at + INDEX_ENTRY);
        at += INDEX_ENTRY + key.length;
      }
      await flush();
      const trailer = digest.digest().subarray(0, INDEX_TRAILER);
      await fh.write(trailer, 0, INDEX_TRAILER);
      await fh.sync();
      complete = this.writes === writes;
    } finally {
      await fh.close();
      if (!complete) await unlink(tmp).catch(() => undefined);
    }
    if (!complete) return false;
    await rename(tmp, file);
    await syncDir(dirname(file));
    this.opts.log.info({ keys: this.index.size, file }, 'anti-entropy key index saved');
    return true;
  }

  /**
   * Opens the index file a clean shutdown left, and deletes its name at once (a crash from now on must
   * not find it), so that the build loads it instead of scanning the store. Must run before anything
   * writes to the store; quick whatever the file's size (the build reads it, in the background). From
   * here on writes go straight into the index: they are all newer than the file. Resolves true when
   * there was a file.
   */
  async openIndex(): Promise<boolean> {
    const file = this.opts.indexFile;
    if (!file || this.state.kind !== 'empty') return false;
    await unlink(`${file}.tmp`).catch(() => undefined);
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch {
      return false;
    }
    await unlink(file);
    await syncDir(dirname(file));
    this.indexFileHandle = fh;
    this.resetTrees();
    this.state = { kind: 'scanning', ring: this.opts.membership.ring(), deleted: new Set() };
    return true;
  }

  /**
   * Reads the index file openIndex opened into the index: checked whole first (magic, format, depth,
   * entries, checksum), then taken, except keys written or deleted since the start. False (the store is
   * then scanned) for a file of another --merkle-depth; throws on a damaged one.
   */
  private async loadIndex(fh: FileHandle, deleted: Set<string>): Promise<boolean> {
    const size = (await fh.stat()).size;
    const corrupt = (why: string): never => {
      throw new Error(`anti-entropy key index file: ${why}`);
    };
    if (size < INDEX_HEADER + INDEX_TRAILER) corrupt(`${size} bytes is too short`);
    const end = size - INDEX_TRAILER;
    const header = Buffer.alloc(INDEX_HEADER);
    await fh.read(header, 0, INDEX_HEADER, 0);
    if (!header.subarray(0, 4).equals(INDEX_MAGIC)) corrupt('bad magic');
    if (header.readUInt8(4) !== INDEX_FORMAT) corrupt(`unknown format ${header.readUInt8(4)}`);
    if (header.readUInt8(5) !== this.opts.depth) return false;
    const count = header.readUInt32BE(8);
    const chunk = Buffer.allocUnsafe(FILE_BUFFER);
    /** Calls take(entry bytes) for every entry, in order; verifies the checksum (and the count). */
    const entries = async (take?: (e: Buffer) => void) => {
      const digest = createHash('sha256').update(header);
      let pos = INDEX_HEADER;
      let pending = Buffer.alloc(0);
      let seen = 0;
      while (pos < end) {
        if (this.stopped) throw new Error('anti-entropy stopped');
        const want = Math.min(chunk.length, end - pos);
        const { bytesRead } = await fh.read(chunk, 0, want, pos);
        if (bytesRead !== want) corrupt('short read');
        pos += want;
        digest.update(chunk.subarray(0, want));
        pending =
          pending.length === 0 ? chunk.subarray(0, want) : Buffer.concat([pending, chunk.subarray(0, want)]);
        let at = 0;
        while (at + INDEX_ENTRY <= pending.length) {
          const len = pending.readUInt16BE(at);
          if (at + INDEX_ENTRY + len > pending.length) break;
          const entry = pending.subarray(at, at + INDEX_ENTRY + len);
          const leaf = entry.readUInt16BE(2);
          if (len === 0 || leaf >= this.index.leafCount || !entry.subarray(INDEX_ENTRY).includes(0))
            corrupt(`bad entry ${seen}`);
          take?.(entry);
          seen++;
          at += INDEX_ENTRY + len;
        }
        // What is left is the start of the next entry: keep a copy (chunk is reused).
        pending = Buffer.from(pending.subarray(at));
      }
      if (pending.length > 0 || seen !== count)
        corrupt(`${seen} keys and ${pending.length} bytes, expected ${count} keys`);
      const trailer = Buffer.alloc(INDEX_TRAILER);
      await fh.read(trailer, 0, INDEX_TRAILER, end);
      if (!digest.digest().subarray(0, INDEX_TRAILER).equals(trailer)) corrupt('checksum mismatch');
    };
    await entries();
    const { index } = this;
    await entries((e) => {
      const key = e.subarray(INDEX_ENTRY);
      // Written since the start (newer than the file), or deleted since: not from the file.
      if (index.find(key) >= 0 || (deleted.size > 0 && deleted.has(key.toString('utf8')))) return;
      index.add(key, e.readUInt16BE(2), e.subarray(4, INDEX_ENTRY), 0);
    });
    return true;
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  /** Stops the exchanges and any build of the trees; resolves once a build running has given up. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.building?.catch(() => undefined);
    // An index file opened but never loaded (the node stopped before its build began).
    const fh = this.indexFileHandle;
    this.indexFileHandle = undefined;
    await fh?.close();
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
    this.running++;
    try {
      return await this.exchangeWith(peer);
    } finally {
      this.running--;
    }
  }

  private async exchangeWith(peer: string): Promise<number> {
    if (this.stopped) throw new Error('anti-entropy stopped');
    if (this.stale || this.opts.membership.ring() !== this.current()) await this.rebuild();
    const cpu0 = process.cpuUsage();
    const { self, timeoutMs } = this.opts;
    const ask = (req: AntiEntropyRequest) => this.opts.request(peer, req, timeoutMs);
    const ring = this.current();
    if (!ring) throw new Error('anti-entropy: the ring changed while the trees were built');
    const local = this.trees.get(peer) ?? this.emptyTree;
    const mine = ringFingerprint(ring);
    const { root, ring: theirRing } = (await ask({ op: 'ae.root', from: self, ring: mine })) as {
      root: Buffer;
      ring?: string;
    };
    // Trees built on different rings disagree about who replicates what: repairing across them would
    // push copies to a node that no longer replicates a key (after its cleanup) and bring back keys
    // deleted meanwhile. Wait until both sides see the same ring.
    if (theirRing !== undefined && theirRing !== mine) {
      this.opts.log.debug({ peer }, 'anti-entropy skipped: the peer sees another ring');
      return 0;
    }
    const leaves = await compareLevelByLevelAsync(
      local,
      async (d, indices) =>
        ((await ask({ op: 'ae.children', from: self, d, indices })) as { children: Buffer[][] }).children,
      root,
    );
    let repaired = 0;
    let bytes = 0;
    // A ring change mid-exchange ends it: the repairs were decided on the old ring.
    const sameRing = () => {
      if (this.opts.membership.ring() !== ring || this.current() !== ring)
        throw new Error('anti-entropy exchange stopped: the ring changed');
    };
    const repairLeaf = async (leaf: number, theirs: Map<string, Buffer>) => {
      sameRing();
      const ours = new Map(this.keysInLeaf(leaf, peer));
      const differing = new Set<string>();
      for (const [k, d] of ours) if (!theirs.get(k)?.equals(d)) differing.add(k);
      for (const [k, d] of theirs) if (!ours.get(k)?.equals(d)) differing.add(k);
      for (const okey of differing) {
        sameRing();
        if (this.stopped) throw new Error('anti-entropy stopped');
        const [b, k] = splitKey(okey);
        const lww = this.opts.props.get(b).conflict === 'lww';
        const mine = this.opts.store.getRaw(b, k);
        // The index entry again from the store (a no-op unless they disagree, as after a lost write).
        this.onWrite(b, k, mine ? decodeObject(mine) : undefined);
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
    };
    // The peer's keys of the differing leaves, page by page; each leaf is repaired once complete.
    const wanted = new Set(leaves);
    const pending = new Map<number, Map<string, Buffer>>();
    let from = 0;
    let after: string | undefined;
    while (from < leaves.length) {
      const reply = (await ask({
        op: 'ae.keys',
        from: self,
        leaves: leaves.slice(from),
        ...(after === undefined ? {} : { after }),
      })) as AeKeysReply;
      for (const [okey, pair] of reply.keys) {
        const [b, k] = splitKey(okey);
        const leaf = this.emptyTree.leafIndexOf(hashKey(b, k), okey);
        if (!wanted.has(leaf))
          throw new Error(`anti-entropy: ${peer} listed a key of leaf ${leaf}, not asked for`);
        let m = pending.get(leaf);
        if (!m) {
          m = new Map();
          pending.set(leaf, m);
        }
        m.set(okey, pair);
      }
      let until = leaves.length;
      if (reply.next) {
        until = leaves.indexOf(reply.next.leaf, from);
        const progressed = until > from || (reply.next.after !== undefined && reply.next.after !== after);
        if (until < 0 || !progressed)
          throw new Error(`anti-entropy: ${peer} paged its keys without progress (leaf ${reply.next.leaf})`);
      }
      for (let i = from; i < until; i++) {
        const leaf = leaves[i] as number;
        await repairLeaf(leaf, pending.get(leaf) ?? new Map());
        pending.delete(leaf);
      }
      from = until;
      after = reply.next?.after;
    }
    const cpu = process.cpuUsage(cpu0);
    this.opts.onExchange?.(peer, leaves.length, repaired, bytes, cpu.user + cpu.system);
    return repaired;
  }
}
