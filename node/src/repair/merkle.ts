import { hash } from 'node:crypto';
import { isToken, type Token } from '../ring/index.js';

/**
 * Merkle trees for anti-entropy, one per token range, in the spirit of Riak's hashtree.erl and
 * Cassandra's MerkleTree: a fixed-shape binary tree whose leaves split the range into equal slices
 * of the ring, kept current on every write so an exchange never needs a rebuild.
 *
 * Hashing (node:crypto only). Every hash is SHA-256 truncated to 128 bits (HASH_BYTES):
 * - a stored object contributes the pair hash H(u32be(len(key)) ‖ key ‖ versionDigest); the length
 *   prefix keeps the key/digest boundary unambiguous;
 * - a leaf is the XOR of the pair hashes of the keys whose ring position falls in its slice, so a
 *   write is "XOR out the old pair, XOR in the new one" whatever the order of writes;
 * - an inner node is H(left ‖ right), or all zeros when both children are zero (an empty subtree),
 *   recomputed lazily: a write only marks the path to the root dirty.
 *
 * Why XOR of hashes is safe enough here: pair hashes behave like independent random 128-bit
 * values, so two leaves holding different sets of pairs agree only with probability 2^-128, and
 * contents are not chosen by an attacker trying to hide a divergence. Its known weakness is
 * cancellation: XOR is a set hash, not a multiset hash (a pair added twice vanishes), and pairs
 * whose hashes XOR to zero go unseen. Hashing key and digest together, rather than XORing their
 * separate hashes, means swapping versions between two keys still changes the leaf. The tree holds
 * one pair per key only if callers pass the true old digest on update; a wrong one leaves a phantom
 * pair that shows up as a persistent (harmless, repairable) difference until the next full build.
 */

/** Bytes in every node hash (128 bits). */
export const HASH_BYTES = 16;
/** Depth used when none is given: 2^10 = 1024 leaves. */
export const DEFAULT_MERKLE_DEPTH = 10;
export const MIN_MERKLE_DEPTH = 1;
export const MAX_MERKLE_DEPTH = 16;

/** A ring range (start, end]: start exclusive, end inclusive; end < start wraps past the top; start = end is the whole ring. */
export interface TokenRange {
  start: Token;
  end: Token;
}

/** One stored object as the tree sees it: its key, its ring position and a digest of its version. */
export interface MerkleEntry {
  objectKey: string;
  position: Token;
  digest: Buffer;
}

const RING_SIZE = 1n << 128n;
const ZERO_TAIL = '0'.repeat(24);
const ZERO_HASH = Buffer.alloc(HASH_BYTES);
const MAGIC = Buffer.from('DKMT', 'latin1');
const FORMAT_VERSION = 1;
const ENCODING_DENSE = 0;
const ENCODING_SPARSE = 1;
const HEADER_BYTES = MAGIC.length + 3 + 2 * HASH_BYTES;
const CHECKSUM_BYTES = 8;

/** True when position lies in (range.start, range.end], wrapping when end < start; start = end covers the whole ring. */
export function inTokenRange(position: Token, range: TokenRange): boolean {
  const { start, end } = range;
  if (start < end) return start < position && position <= end;
  return position > start || position <= end;
}

function assertRange(range: TokenRange): void {
  for (const [name, token] of [
    ['start', range.start],
    ['end', range.end],
  ] as const) {
    if (typeof token !== 'string' || !isToken(token)) {
      throw new RangeError(`merkle: range ${name} must be a token (32 lowercase hex chars), got '${token}'`);
    }
  }
}

function assertDepth(depth: number): void {
  if (!Number.isInteger(depth) || depth < MIN_MERKLE_DEPTH || depth > MAX_MERKLE_DEPTH) {
    throw new RangeError(
      `merkle: depth must be an integer in ${MIN_MERKLE_DEPTH}..${MAX_MERKLE_DEPTH}, got ${depth}`,
    );
  }
}

function toBig(token: Token): bigint {
  return BigInt(`0x${token}`);
}

function toToken(value: bigint): Token {
  return value.toString(16).padStart(32, '0');
}

function sha128(...parts: Buffer[]): Buffer {
  // One-shot hashing: cheaper than a Hash object, and this runs for every write on every replica.
  return hash('sha256', parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts), 'buffer').subarray(
    0,
    HASH_BYTES,
  );
}

/** The 128-bit hash one (objectKey, versionDigest) pair contributes to its leaf. */
export function pairHash(objectKey: string, digest: Buffer): Buffer {
  const key = Buffer.from(objectKey, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(key.length);
  return sha128(length, key, digest);
}

function isZero(buf: Buffer, offset: number, length: number): boolean {
  for (let k = offset; k < offset + length; k++) if (buf[k] !== 0) return false;
  return true;
}

function describeRange(range: TokenRange): string {
  return `(${range.start}, ${range.end}]`;
}

/** A fixed-shape binary Merkle tree over one token range, updated incrementally on every write. */
export class MerkleTree {
  readonly range: TokenRange;
  readonly depth: number;
  readonly leafCount: number;
  /** nodes[d] holds the 2^d hashes at depth d back to back; nodes[depth] are the leaves. */
  private readonly nodes: Buffer[];
  /** dirty[d][i] = 1 when inner node (d, i) must be recomputed; a dirty node's ancestors are dirty too. */
  private readonly dirty: Uint8Array[];
  private readonly startBig: bigint;
  /** Number of ring positions in the range. */
  private readonly width: bigint;

  /** An empty tree over range with 2^depth leaves; throws RangeError on a bad range or depth, or a range narrower than its leaf count. */
  constructor(range: TokenRange, depth: number = DEFAULT_MERKLE_DEPTH) {
    assertRange(range);
    assertDepth(depth);
    this.range = { start: range.start, end: range.end };
    this.depth = depth;
    this.leafCount = 2 ** depth;
    this.startBig = toBig(range.start);
    const span = (toBig(range.end) - this.startBig + RING_SIZE) % RING_SIZE;
    this.width = span === 0n ? RING_SIZE : span;
    if (this.width < BigInt(this.leafCount)) {
      throw new RangeError(
        `merkle: range ${describeRange(range)} holds ${this.width} positions, fewer than its ${this.leafCount} leaves`,
      );
    }
    this.nodes = [];
    this.dirty = [];
    for (let d = 0; d <= depth; d++) {
      this.nodes.push(Buffer.alloc(2 ** d * HASH_BYTES));
      if (d < depth) this.dirty.push(new Uint8Array(2 ** d));
    }
  }

  /** A tree over range filled from entries in one pass (the initial build, or a periodic rebuild). */
  static build(range: TokenRange, depth: number, entries: Iterable<MerkleEntry>): MerkleTree {
    const tree = new MerkleTree(range, depth);
    for (const { objectKey, position, digest } of entries) {
      tree.xorLeaf(tree.leafIndexOf(position, objectKey), pairHash(objectKey, digest));
    }
    tree.markAllDirty();
    return tree;
  }

  /** Replace objectKey's (old) version digest with the new one; undefined means absent, so this inserts, changes or deletes. */
  update(
    objectKey: string,
    position: Token,
    oldDigest: Buffer | undefined,
    newDigest: Buffer | undefined,
  ): void {
    const leaf = this.leafIndexOf(position, objectKey);
    if (oldDigest === newDigest || (oldDigest && newDigest && oldDigest.equals(newDigest))) return;
    this.updateLeaf(
      leaf,
      oldDigest && pairHash(objectKey, oldDigest),
      newDigest && pairHash(objectKey, newDigest),
    );
  }

  /**
   * update() for callers that already hold the pair hashes (pairHash(objectKey, digest)) and the leaf:
   * XORs out the old, XORs in the new. Lets one write's pair hash serve several trees.
   */
  updateLeaf(leaf: number, oldPair: Buffer | undefined, newPair: Buffer | undefined): void {
    this.assertIndex(this.depth, leaf);
    if (oldPair !== undefined) this.xorLeaf(leaf, oldPair);
    if (newPair !== undefined) this.xorLeaf(leaf, newPair);
    // Ancestors of a dirty node are already dirty, so the walk stops at the first one.
    for (let d = this.depth - 1, i = leaf >>> 1; d >= 0; d--, i >>>= 1) {
      const flags = this.dirty[d] as Uint8Array;
      if (flags[i] === 1) break;
      flags[i] = 1;
    }
  }

  /** Index of the leaf holding position: its offset in the range scaled to 0..leafCount-1; throws RangeError when outside the range. */
  leafIndexOf(position: Token, objectKey?: string): number {
    if (typeof position !== 'string' || !isToken(position)) {
      throw new RangeError(`merkle: position must be a token (32 lowercase hex chars), got '${position}'`);
    }
    if (!inTokenRange(position, this.range)) {
      const what = objectKey === undefined ? '' : ` of key '${objectKey}'`;
      throw new RangeError(
        `merkle: position ${position}${what} is outside the tree's range ${describeRange(this.range)}`,
      );
    }
    // Fast path for a whole-ring tree starting at 0 (what anti-entropy uses, on every write): the leaf of
    // position p is the top `depth` bits of p - 1, which are p's own top bits unless p's lower bits are
    // all zero (p sits exactly on a leaf boundary); only that case needs the BigInt arithmetic.
    if (this.startBig === 0n && this.width === RING_SIZE) {
      const top = Number.parseInt(position.slice(0, 8), 16);
      const shift = 32 - this.depth;
      if ((top & ((1 << shift) - 1)) !== 0 || position.slice(8) !== ZERO_TAIL) return top >>> shift;
    }
    const offset = (toBig(position) - this.startBig - 1n + RING_SIZE) % RING_SIZE;
    return Number((offset * BigInt(this.leafCount)) / this.width);
  }

  /** The slice (start, end] of the ring that leaf i covers; leaves tile the range in order. */
  leafRange(i: number): TokenRange {
    this.assertIndex(this.depth, i);
    return { start: this.boundary(i), end: this.boundary(i + 1) };
  }

  /** Hash of the whole tree: equal roots mean equal contents. All zeros for an empty tree. */
  rootHash(): Buffer {
    return this.node(0, 0);
  }

  /** Hash of node i at depth d (0 = root, depth = leaves). */
  node(d: number, i: number): Buffer {
    this.assertIndex(d, i);
    return Buffer.from(this.view(d, i));
  }

  /** Hashes of all 2^d nodes at depth d, left to right. */
  level(d: number): Buffer[] {
    this.assertDepthIndex(d);
    const hashes: Buffer[] = [];
    for (let i = 0; i < 2 ** d; i++) hashes.push(Buffer.from(this.view(d, i)));
    return hashes;
  }

  /** Hashes of the two children of node (d, i), for d < depth: what a peer asks for in an exchange. */
  childrenOf(d: number, i: number): Buffer[] {
    this.assertIndex(d, i);
    if (d >= this.depth) throw new RangeError(`merkle: depth ${d} holds the leaves, which have no children`);
    return [Buffer.from(this.view(d + 1, 2 * i)), Buffer.from(this.view(d + 1, 2 * i + 1))];
  }

  /** Leaf indices where a and b differ, ascending; throws when the trees differ in range or depth. */
  static diff(a: MerkleTree, b: MerkleTree): number[] {
    if (!a.sameShape(b)) {
      throw new Error(
        `merkle: cannot diff trees of different shape: ${describeRange(a.range)} depth ${a.depth} vs ${describeRange(b.range)} depth ${b.depth}`,
      );
    }
    return compareLevelByLevel(a, (d, indices) => indices.map((i) => b.childrenOf(d, i)), b.rootHash());
  }

  /** True when other covers the same range with the same depth, so their nodes can be compared. */
  sameShape(other: MerkleTree): boolean {
    return (
      this.depth === other.depth &&
      this.range.start === other.range.start &&
      this.range.end === other.range.end
    );
  }

  /** A compact, checksummed encoding of the range, depth and leaves (sparse when few leaves are set). */
  serialize(): Buffer {
    const leaves = this.nodes[this.depth] as Buffer;
    const set: number[] = [];
    for (let i = 0; i < this.leafCount; i++) if (!isZero(leaves, i * HASH_BYTES, HASH_BYTES)) set.push(i);
    const sparseBytes = 4 + set.length * (2 + HASH_BYTES);
    const sparse = sparseBytes < leaves.length;
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeUInt8(FORMAT_VERSION, 4);
    header.writeUInt8(this.depth, 5);
    header.writeUInt8(sparse ? ENCODING_SPARSE : ENCODING_DENSE, 6);
    header.write(this.range.start, 7, 'hex');
    header.write(this.range.end, 7 + HASH_BYTES, 'hex');
    let body: Buffer;
    if (sparse) {
      body = Buffer.alloc(sparseBytes);
      body.writeUInt32BE(set.length, 0);
      set.forEach((leaf, k) => {
        const at = 4 + k * (2 + HASH_BYTES);
        body.writeUInt16BE(leaf, at);
        leaves.copy(body, at + 2, leaf * HASH_BYTES, (leaf + 1) * HASH_BYTES);
      });
    } else {
      body = Buffer.from(leaves);
    }
    const checksum = sha128(header, body).subarray(0, CHECKSUM_BYTES);
    return Buffer.concat([header, body, checksum]);
  }

  /** The tree serialize() wrote; inner nodes are recomputed lazily. Throws Error on a truncated, corrupt or unknown encoding. */
  static deserialize(bytes: Buffer): MerkleTree {
    const fail = (why: string): never => {
      throw new Error(`merkle: cannot deserialize tree: ${why}`);
    };
    if (bytes.length < HEADER_BYTES + CHECKSUM_BYTES) fail(`${bytes.length} bytes is too short`);
    if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) fail('not a serialized Merkle tree (bad magic)');
    const version = bytes.readUInt8(4);
    if (version !== FORMAT_VERSION) fail(`unknown format version ${version}`);
    const content = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
    const checksum = sha128(content).subarray(0, CHECKSUM_BYTES);
    if (!checksum.equals(bytes.subarray(bytes.length - CHECKSUM_BYTES))) fail('checksum mismatch');
    const depth = bytes.readUInt8(5);
    const encoding = bytes.readUInt8(6);
    const range = {
      start: bytes.toString('hex', 7, 7 + HASH_BYTES),
      end: bytes.toString('hex', 7 + HASH_BYTES, HEADER_BYTES),
    };
    const tree = new MerkleTree(range, depth);
    const leaves = tree.nodes[depth] as Buffer;
    const body = content.subarray(HEADER_BYTES);
    if (encoding === ENCODING_DENSE) {
      if (body.length !== leaves.length)
        fail(`dense body is ${body.length} bytes, expected ${leaves.length}`);
      body.copy(leaves);
    } else if (encoding === ENCODING_SPARSE) {
      if (body.length < 4) fail('sparse body is truncated');
      const count = body.readUInt32BE(0);
      if (body.length !== 4 + count * (2 + HASH_BYTES)) fail(`sparse body does not hold ${count} leaves`);
      let previous = -1;
      for (let k = 0; k < count; k++) {
        const at = 4 + k * (2 + HASH_BYTES);
        const leaf = body.readUInt16BE(at);
        if (leaf <= previous || leaf >= tree.leafCount) fail(`leaf index ${leaf} is out of order or range`);
        body.copy(leaves, leaf * HASH_BYTES, at + 2, at + 2 + HASH_BYTES);
        previous = leaf;
      }
    } else {
      fail(`unknown encoding ${encoding}`);
    }
    tree.markAllDirty();
    return tree;
  }

  /** The live bytes of node (d, i), recomputed first if dirty; callers must not keep or mutate them. */
  private view(d: number, i: number): Buffer {
    this.refresh(d, i);
    return (this.nodes[d] as Buffer).subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  private refresh(d: number, i: number): void {
    if (d === this.depth) return;
    const flags = this.dirty[d] as Uint8Array;
    if (flags[i] !== 1) return;
    this.refresh(d + 1, 2 * i);
    this.refresh(d + 1, 2 * i + 1);
    const below = this.nodes[d + 1] as Buffer;
    const children = below.subarray(2 * i * HASH_BYTES, (2 * i + 2) * HASH_BYTES);
    const hash = isZero(children, 0, children.length) ? ZERO_HASH : sha128(children);
    hash.copy(this.nodes[d] as Buffer, i * HASH_BYTES);
    flags[i] = 0;
  }

  private xorLeaf(leaf: number, hash: Buffer): void {
    const leaves = this.nodes[this.depth] as Buffer;
    const at = leaf * HASH_BYTES;
    for (let k = 0; k < HASH_BYTES; k++) leaves[at + k] = (leaves[at + k] as number) ^ (hash[k] as number);
  }

  private markAllDirty(): void {
    for (const flags of this.dirty) flags.fill(1);
  }

  /** Position start + ceil(i * width / leafCount): the exclusive start of leaf i (and end of leaf i-1). */
  private boundary(i: number): Token {
    const leaves = BigInt(this.leafCount);
    const offset = (BigInt(i) * this.width + leaves - 1n) / leaves;
    return toToken((this.startBig + offset) % RING_SIZE);
  }

  private assertDepthIndex(d: number): void {
    if (!Number.isInteger(d) || d < 0 || d > this.depth) {
      throw new RangeError(`merkle: depth index must be an integer in 0..${this.depth}, got ${d}`);
    }
  }

  private assertIndex(d: number, i: number): void {
    this.assertDepthIndex(d);
    if (!Number.isInteger(i) || i < 0 || i >= 2 ** d) {
      throw new RangeError(
        `merkle: node index at depth ${d} must be an integer in 0..${2 ** d - 1}, got ${i}`,
      );
    }
  }
}

/**
 * The local side of a level-by-level exchange: starting at the root, ask the remote replica for
 * the children of only the nodes that differ, one depth per round, and return the differing leaf
 * indices (ascending). askRemote(d, indices) must return, for each index at depth d, the remote's
 * childrenOf(d, index). Pass remoteRoot when the peer already sent its root, to skip the exchange
 * when the roots agree. Both trees must have the same range and depth; a reply of the wrong shape
 * throws Error.
 */
export function compareLevelByLevel(
  local: MerkleTree,
  askRemote: (d: number, indices: number[]) => Buffer[][],
  remoteRoot?: Buffer,
): number[] {
  if (remoteRoot?.equals(local.rootHash())) return [];
  let differing = [0];
  for (let d = 0; d < local.depth && differing.length > 0; d++) {
    differing = differingChildren(local, d, differing, askRemote(d, [...differing]));
  }
  return differing;
}

/** compareLevelByLevel over a network: askRemote may be asynchronous (one round trip per depth). */
export async function compareLevelByLevelAsync(
  local: MerkleTree,
  askRemote: (d: number, indices: number[]) => Promise<Buffer[][]>,
  remoteRoot?: Buffer,
): Promise<number[]> {
  if (remoteRoot?.equals(local.rootHash())) return [];
  let differing = [0];
  for (let d = 0; d < local.depth && differing.length > 0; d++) {
    differing = differingChildren(local, d, differing, await askRemote(d, [...differing]));
  }
  return differing;
}

/** One round of the exchange: the children (at depth d+1) of the differing nodes whose hashes disagree. */
function differingChildren(local: MerkleTree, d: number, differing: number[], replies: Buffer[][]): number[] {
  if (!Array.isArray(replies) || replies.length !== differing.length) {
    throw new Error(
      `merkle: remote answered ${Array.isArray(replies) ? replies.length : 'no'} replies for ${differing.length} nodes at depth ${d}`,
    );
  }
  const next: number[] = [];
  differing.forEach((i, k) => {
    const theirs = replies[k];
    if (
      !Array.isArray(theirs) ||
      theirs.length !== 2 ||
      !theirs.every((h) => Buffer.isBuffer(h) && h.length === HASH_BYTES)
    ) {
      throw new Error(`merkle: remote sent malformed children for node ${i} at depth ${d}`);
    }
    const ours = local.childrenOf(d, i);
    for (let c = 0; c < 2; c++) {
      if (!(ours[c] as Buffer).equals(theirs[c] as Buffer)) next.push(2 * i + c);
    }
  });
  return next;
}
