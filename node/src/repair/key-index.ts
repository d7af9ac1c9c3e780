/**
 * The anti-entropy key index: one entry per object this node stores, holding what the Merkle trees are
 * made of — the object's key, the 128-bit pair hash of its current version, its leaf (by ring position),
 * and the group of peers whose trees hold it (a small id that anti-entropy maps to peer ids) — in typed
 * arrays and one byte arena, off the JS heap: about 60 bytes a key plus its name, where a Map of strings
 * to Buffers per peer cost several hundred.
 *
 * Layout, by entry id (ids are reused after a removal):
 * - hash32: 32 bits of the key's ring position, for the open-addressing table that finds a key (linear
 *   probing, deletion by backward shift, so no tombstones accumulate);
 * - pairs: 16 bytes each; groups: u32; leaves: u16 (a tree of depth ≤ 16 has ≤ 65536 leaves);
 * - next/prev: a doubly linked list of the entries of each leaf (heads: one per leaf), so a leaf's keys
 *   are listed without a scan and an entry is unlinked in O(1);
 * - keyOff/keyLen into the arena, which holds the keys' UTF-8 bytes; a removed key's bytes are garbage
 *   until the arena is compacted (when garbage exceeds the live bytes).
 * Pure data structure: no ring, no store, no hashing of its own.
 */

/** Bytes of a pair hash (merkle.ts HASH_BYTES). */
export const PAIR_BYTES = 16;
/** Longest key the index holds: a bucket (255), NUL, and a key of 1024 UTF-16 units at 3 bytes each. */
export const MAX_INDEX_KEY_BYTES = 0xffff;

const MIN_CAPACITY = 1024;
const MAX_LOAD = 0.7;

export class KeyIndex {
  readonly leafCount: number;
  private capacity = 0;
  private count = 0;
  /** Every id below this was handed out at some point; ids at or above it never were. */
  private high = 0;
  /** Head of the list of removed ids (linked through next). */
  private free = -1;
  private hash32 = new Uint32Array(0);
  private pairs = Buffer.alloc(0);
  private groups = new Uint32Array(0);
  private leaves = new Uint16Array(0);
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private keyOff = new Uint32Array(0);
  /** 0 marks a free id (every key is at least 1 byte). */
  private keyLen = new Uint16Array(0);
  private readonly heads: Int32Array;
  /** Entry id + 1 per slot; 0 is an empty slot. */
  private table = new Int32Array(0);
  private mask = 0;
  private arena = Buffer.alloc(0);
  private arenaUsed = 0;
  private arenaGarbage = 0;

  /** An empty index whose entries fall in leafCount leaves (at most 65536). */
  constructor(leafCount: number) {
    if (!Number.isInteger(leafCount) || leafCount < 1 || leafCount > 0x10000)
      throw new RangeError(`key index: leaf count must be an integer in 1..65536, got ${leafCount}`);
    this.leafCount = leafCount;
    this.heads = new Int32Array(leafCount).fill(-1);
    this.resize(MIN_CAPACITY);
    this.rehash(2048);
  }

  /** Number of keys held. */
  get size(): number {
    return this.count;
  }

  /** Ids of live entries lie below this bound (it only grows). */
  get highWater(): number {
    return this.high;
  }

  /** Bytes the index has allocated (typed arrays and arena), all outside the JS heap. */
  get memoryBytes(): number {
    return (
      this.hash32.byteLength +
      this.pairs.byteLength +
      this.groups.byteLength +
      this.leaves.byteLength +
      this.next.byteLength +
      this.prev.byteLength +
      this.keyOff.byteLength +
      this.keyLen.byteLength +
      this.heads.byteLength +
      this.table.byteLength +
      this.arena.byteLength
    );
  }

  /** True when id holds a key. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.high && this.keyLen[id] !== 0;
  }

  /** The entry holding key (its UTF-8 bytes) with the given 32-bit hash, or -1. */
  find(key: Buffer, hash: number): number {
    const h = hash >>> 0;
    for (let slot = h & this.mask; ; slot = (slot + 1) & this.mask) {
      const v = this.table[slot] as number;
      if (v === 0) return -1;
      const id = v - 1;
      if (this.hash32[id] === h && this.sameKey(id, key)) return id;
    }
  }

  /** Adds key, which must not be held yet; returns its id. Throws RangeError on a key too long or a bad leaf. */
  add(key: Buffer, hash: number, leaf: number, pair: Uint8Array, group: number): number {
    if (key.length === 0 || key.length > MAX_INDEX_KEY_BYTES)
      throw new RangeError(`key index: a key must hold 1..${MAX_INDEX_KEY_BYTES} bytes, got ${key.length}`);
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount)
      throw new RangeError(`key index: leaf ${leaf} is outside 0..${this.leafCount - 1}`);
    let id: number;
    if (this.free >= 0) {
      id = this.free;
      this.free = this.next[id] as number;
    } else {
      if (this.high === this.capacity) this.resize(Math.ceil(this.capacity * 1.5));
      id = this.high++;
    }
    if ((this.count + 1) / this.table.length > MAX_LOAD) this.rehash(this.table.length * 2);
    const h = hash >>> 0;
    this.hash32[id] = h;
    this.setPair(id, pair);
    this.groups[id] = group;
    this.leaves[id] = leaf;
    this.keyOff[id] = this.store(key);
    this.keyLen[id] = key.length;
    const head = this.heads[leaf] as number;
    this.next[id] = head;
    this.prev[id] = -1;
    if (head >= 0) this.prev[head] = id;
    this.heads[leaf] = id;
    let slot = h & this.mask;
    while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
    this.table[slot] = id + 1;
    this.count++;
    return id;
  }

  /** Removes the entry id (its id may be handed out again). */
  remove(id: number): void {
    this.assertLive(id);
    // Unlink from its leaf's list.
    const [p, n] = [this.prev[id] as number, this.next[id] as number];
    if (p >= 0) this.next[p] = n;
    else this.heads[this.leaves[id] as number] = n;
    if (n >= 0) this.prev[n] = p;
    // Take it out of the table, shifting later entries of its probe run back.
    let slot = (this.hash32[id] as number) & this.mask;
    while (this.table[slot] !== id + 1) slot = (slot + 1) & this.mask;
    this.table[slot] = 0;
    for (let j = (slot + 1) & this.mask; ; j = (j + 1) & this.mask) {
      const v = this.table[j] as number;
      if (v === 0) break;
      const home = (this.hash32[v - 1] as number) & this.mask;
      // v stays when its home lies cyclically in (slot, j].
      const stays = slot <= j ? slot < home && home <= j : slot < home || home <= j;
      if (stays) continue;
      this.table[slot] = v;
      this.table[j] = 0;
      slot = j;
    }
    this.arenaGarbage += this.keyLen[id] as number;
    this.keyLen[id] = 0;
    this.next[id] = this.free;
    this.free = id;
    this.count--;
    if (this.arenaGarbage > 1 << 20 && this.arenaGarbage * 2 > this.arenaUsed) this.compact();
  }

  /** The key of entry id. */
  keyOf(id: number): string {
    this.assertLive(id);
    const off = this.keyOff[id] as number;
    return this.arena.toString('utf8', off, off + (this.keyLen[id] as number));
  }

  /** The 32-bit hash entry id was added with. */
  hashOf(id: number): number {
    return this.hash32[id] as number;
  }

  /** The leaf of entry id. */
  leafOf(id: number): number {
    return this.leaves[id] as number;
  }

  groupOf(id: number): number {
    return this.groups[id] as number;
  }

  setGroup(id: number, group: number): void {
    this.groups[id] = group;
  }

  /** The live bytes of entry id's pair hash: valid until the index next changes; do not keep them. */
  pairView(id: number): Buffer {
    return this.pairs.subarray(id * PAIR_BYTES, (id + 1) * PAIR_BYTES);
  }

  /** True when entry id's pair hash equals pair. */
  pairEquals(id: number, pair: Uint8Array): boolean {
    const at = id * PAIR_BYTES;
    for (let k = 0; k < PAIR_BYTES; k++) if (this.pairs[at + k] !== pair[k]) return false;
    return true;
  }

  setPair(id: number, pair: Uint8Array): void {
    if (pair.length !== PAIR_BYTES)
      throw new RangeError(`key index: a pair hash holds ${PAIR_BYTES} bytes, got ${pair.length}`);
    this.pairs.set(pair, id * PAIR_BYTES);
  }

  /** Ids of the entries in leaf, most recently added first. */
  idsInLeaf(leaf: number): number[] {
    const ids: number[] = [];
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount) return ids;
    for (let id = this.heads[leaf] as number; id >= 0; id = this.next[id] as number) ids.push(id);
    return ids;
  }

  private sameKey(id: number, key: Buffer): boolean {
    const len = this.keyLen[id] as number;
    if (len !== key.length) return false;
    const off = this.keyOff[id] as number;
    return key.compare(this.arena, off, off + len) === 0;
  }

  private assertLive(id: number): void {
    if (!this.isLive(id)) throw new RangeError(`key index: no entry ${id}`);
  }

  /** Copies key into the arena, growing or compacting it first; returns its offset. */
  private store(key: Buffer): number {
    if (this.arenaUsed + key.length > this.arena.length) {
      const live = this.arenaUsed - this.arenaGarbage;
      if (this.arenaGarbage * 2 > this.arenaUsed && live + key.length <= this.arena.length) this.compact();
      else this.compact(Math.max(1 << 16, Math.ceil((live + key.length) * 1.5)));
    }
    const off = this.arenaUsed;
    key.copy(this.arena, off);
    this.arenaUsed += key.length;
    return off;
  }

  /** Rewrites the arena with only the live keys (into a new one of size bytes when given). */
  private compact(size = this.arena.length): void {
    const arena = Buffer.allocUnsafe(size);
    let used = 0;
    for (let id = 0; id < this.high; id++) {
      const len = this.keyLen[id] as number;
      if (len === 0) continue;
      const off = this.keyOff[id] as number;
      this.arena.copy(arena, used, off, off + len);
      this.keyOff[id] = used;
      used += len;
    }
    this.arena = arena;
    this.arenaUsed = used;
    this.arenaGarbage = 0;
  }

  private resize(capacity: number): void {
    const grow = <A extends Uint32Array | Uint16Array | Int32Array>(old: A, make: (n: number) => A): A => {
      const a = make(capacity);
      a.set(old.subarray(0, this.high) as never);
      return a;
    };
    this.hash32 = grow(this.hash32, (n) => new Uint32Array(n));
    this.groups = grow(this.groups, (n) => new Uint32Array(n));
    this.leaves = grow(this.leaves, (n) => new Uint16Array(n));
    this.next = grow(this.next, (n) => new Int32Array(n));
    this.prev = grow(this.prev, (n) => new Int32Array(n));
    this.keyOff = grow(this.keyOff, (n) => new Uint32Array(n));
    this.keyLen = grow(this.keyLen, (n) => new Uint16Array(n));
    const pairs = Buffer.alloc(capacity * PAIR_BYTES);
    this.pairs.copy(pairs, 0, 0, this.high * PAIR_BYTES);
    this.pairs = pairs;
    this.capacity = capacity;
  }

  private rehash(slots: number): void {
    this.table = new Int32Array(slots);
    this.mask = slots - 1;
    for (let id = 0; id < this.high; id++) {
      if (this.keyLen[id] === 0) continue;
      let slot = (this.hash32[id] as number) & this.mask;
      while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
      this.table[slot] = id + 1;
    }
  }
}
