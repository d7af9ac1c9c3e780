/**
 * The anti-entropy key index: one entry per object this node stores, holding what the Merkle trees are
 * made of — the object's key, the 128-bit pair hash of its current version, its leaf (by ring position),
 * and the group of peers whose trees hold it (a small id that anti-entropy maps to peer ids) — in typed
 * arrays and a byte arena, off the JS heap: 32 bytes an entry, about 5 a table slot, and the key's own
 * bytes, where a Map of strings to Buffers per peer cost several hundred.
 *
 * Layout, by entry id (ids are reused after a removal), in chunks of CHUNK entries that are only ever
 * added (growing never copies nor frees, so the process's memory does not fragment as the index grows):
 * - pairs: 16 bytes each; groups: u32; leaves: u16 (a tree of depth ≤ 16 has ≤ 65536 leaves);
 * - next: a list of the entries of each leaf (heads: one per leaf), so a leaf's keys are listed without
 *   a scan (removing an entry walks its leaf's list: removals are rare, reaping and cleanup);
 * - keyOff/keyLen into the arena, chunks of ARENA_CHUNK bytes holding the keys' UTF-8 bytes (a key never
 *   spans two); a removed key's bytes are garbage until the arena is compacted (garbage over half);
 * - an open-addressing table of entry ids finds a key (FNV-1a of its bytes, linear probing, deletion by
 *   backward shift, so no tombstones accumulate), at most 70% full.
 * Pure data structure: no ring, no store.
 */

/** Bytes of a pair hash (merkle.ts HASH_BYTES). */
export const PAIR_BYTES = 16;
/** Longest key the index holds: a bucket (255), NUL, and a key of 1024 UTF-16 units at 3 bytes each. */
export const MAX_INDEX_KEY_BYTES = 0xffff;

const CHUNK_BITS = 14;
/** Entries per chunk (16384: 512 KiB of arrays). */
const CHUNK = 1 << CHUNK_BITS;
const IN_CHUNK = CHUNK - 1;
const ARENA_BITS = 20;
/** Bytes per arena chunk (1 MiB; a key is at most 64 KiB). */
const ARENA_CHUNK = 1 << ARENA_BITS;
const MAX_LOAD = 0.7;

/** 32-bit FNV-1a of bytes[off, off + len). */
function fnv1a(bytes: Uint8Array, off: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = off; i < off + len; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  return h >>> 0;
}

/** The arrays of CHUNK entries, views of one buffer. */
interface Chunk {
  pairs: Buffer;
  groups: Uint32Array;
  next: Int32Array;
  keyOff: Uint32Array;
  leaves: Uint16Array;
  /** 0 marks a free id (every key is at least 1 byte). */
  keyLen: Uint16Array;
}

function newChunk(): Chunk {
  const bytes = Buffer.alloc(CHUNK * 32);
  const buffer = bytes.buffer;
  const at = bytes.byteOffset;
  return {
    pairs: bytes.subarray(0, CHUNK * PAIR_BYTES),
    groups: new Uint32Array(buffer, at + CHUNK * 16, CHUNK),
    next: new Int32Array(buffer, at + CHUNK * 20, CHUNK),
    keyOff: new Uint32Array(buffer, at + CHUNK * 24, CHUNK),
    leaves: new Uint16Array(buffer, at + CHUNK * 28, CHUNK),
    keyLen: new Uint16Array(buffer, at + CHUNK * 30, CHUNK),
  };
}

export class KeyIndex {
  readonly leafCount: number;
  private readonly chunks: Chunk[] = [];
  private count = 0;
  /** Every id below this was handed out at some point; ids at or above it never were. */
  private high = 0;
  /** Head of the list of removed ids (linked through next). */
  private free = -1;
  private readonly heads: Int32Array;
  /** Entry id + 1 per slot; 0 is an empty slot. */
  private table = new Int32Array(0);
  private mask = 0;
  private arena: Buffer[] = [];
  /** Bytes used in the last arena chunk. */
  private arenaTail = ARENA_CHUNK;
  private arenaLive = 0;
  private arenaGarbage = 0;

  /**
   * An empty index whose entries fall in leafCount leaves (at most 65536). hash places keys in the table
   * (tests pass a poor one, to make long probe runs).
   */
  constructor(
    leafCount: number,
    private readonly hash: (bytes: Uint8Array, off: number, len: number) => number = fnv1a,
  ) {
    if (!Number.isInteger(leafCount) || leafCount < 1 || leafCount > 0x10000)
      throw new RangeError(`key index: leaf count must be an integer in 1..65536, got ${leafCount}`);
    this.leafCount = leafCount;
    this.heads = new Int32Array(leafCount).fill(-1);
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
      this.chunks.length * CHUNK * 32 +
      this.arena.length * ARENA_CHUNK +
      this.heads.byteLength +
      this.table.byteLength
    );
  }

  private chunk(id: number): Chunk {
    return this.chunks[id >>> CHUNK_BITS] as Chunk;
  }

  /** True when id holds a key. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.high && this.chunk(id).keyLen[id & IN_CHUNK] !== 0;
  }

  /** The entry holding key (its UTF-8 bytes), or -1. */
  find(key: Buffer): number {
    for (let slot = this.hash(key, 0, key.length) & this.mask; ; slot = (slot + 1) & this.mask) {
      const v = this.table[slot] as number;
      if (v === 0) return -1;
      if (this.sameKey(v - 1, key)) return v - 1;
    }
  }

  /** Adds key, which must not be held yet; returns its id. Throws RangeError on a key too long or a bad leaf. */
  add(key: Buffer, leaf: number, pair: Uint8Array, group: number): number {
    if (key.length === 0 || key.length > MAX_INDEX_KEY_BYTES)
      throw new RangeError(`key index: a key must hold 1..${MAX_INDEX_KEY_BYTES} bytes, got ${key.length}`);
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount)
      throw new RangeError(`key index: leaf ${leaf} is outside 0..${this.leafCount - 1}`);
    if (pair.length !== PAIR_BYTES)
      throw new RangeError(`key index: a pair hash holds ${PAIR_BYTES} bytes, got ${pair.length}`);
    let id: number;
    if (this.free >= 0) {
      id = this.free;
      this.free = this.chunk(id).next[id & IN_CHUNK] as number;
    } else {
      if (this.high === this.chunks.length * CHUNK) this.chunks.push(newChunk());
      id = this.high++;
    }
    if ((this.count + 1) / this.table.length > MAX_LOAD) this.rehash(this.table.length * 2);
    const off = this.store(key);
    const c = this.chunk(id);
    const i = id & IN_CHUNK;
    c.pairs.set(pair, i * PAIR_BYTES);
    c.groups[i] = group;
    c.leaves[i] = leaf;
    c.keyOff[i] = off;
    c.keyLen[i] = key.length;
    c.next[i] = this.heads[leaf] as number;
    this.heads[leaf] = id;
    let slot = this.hash(key, 0, key.length) & this.mask;
    while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
    this.table[slot] = id + 1;
    this.count++;
    return id;
  }

  /** Removes the entry id (its id may be handed out again). */
  remove(id: number): void {
    this.assertLive(id);
    const c = this.chunk(id);
    const i = id & IN_CHUNK;
    // Unlink from its leaf's list.
    const leaf = c.leaves[i] as number;
    const after = c.next[i] as number;
    if (this.heads[leaf] === id) this.heads[leaf] = after;
    else {
      let p = this.heads[leaf] as number;
      for (let n = this.nextOf(p); n !== id; n = this.nextOf(p)) p = n;
      this.chunk(p).next[p & IN_CHUNK] = after;
    }
    // Take it out of the table, shifting later entries of its probe run back.
    let slot = this.hashOf(id) & this.mask;
    while (this.table[slot] !== id + 1) slot = (slot + 1) & this.mask;
    this.table[slot] = 0;
    for (let j = (slot + 1) & this.mask; ; j = (j + 1) & this.mask) {
      const v = this.table[j] as number;
      if (v === 0) break;
      const home = this.hashOf(v - 1) & this.mask;
      // v stays when its home lies cyclically in (slot, j].
      const stays = slot <= j ? slot < home && home <= j : slot < home || home <= j;
      if (stays) continue;
      this.table[slot] = v;
      this.table[j] = 0;
      slot = j;
    }
    const len = c.keyLen[i] as number;
    this.arenaGarbage += len;
    this.arenaLive -= len;
    c.keyLen[i] = 0;
    c.next[i] = this.free;
    this.free = id;
    this.count--;
    if (this.arenaGarbage > ARENA_CHUNK && this.arenaGarbage > this.arenaLive) this.compact();
  }

  /** The key of entry id. */
  keyOf(id: number): string {
    this.assertLive(id);
    const c = this.chunk(id);
    const i = id & IN_CHUNK;
    const off = c.keyOff[i] as number;
    const at = off & (ARENA_CHUNK - 1);
    return (this.arena[off >>> ARENA_BITS] as Buffer).toString('utf8', at, at + (c.keyLen[i] as number));
  }

  /** The UTF-8 bytes of entry id's key: a view valid until the index next changes; do not keep it. */
  keyBytes(id: number): Buffer {
    this.assertLive(id);
    const [chunk, at, len] = this.keyAt(id);
    return chunk.subarray(at, at + len);
  }

  /** The leaf of entry id. */
  leafOf(id: number): number {
    return this.chunk(id).leaves[id & IN_CHUNK] as number;
  }

  groupOf(id: number): number {
    return this.chunk(id).groups[id & IN_CHUNK] as number;
  }

  setGroup(id: number, group: number): void {
    this.chunk(id).groups[id & IN_CHUNK] = group;
  }

  /** The live bytes of entry id's pair hash: valid until the index next changes; do not keep them. */
  pairView(id: number): Buffer {
    const at = (id & IN_CHUNK) * PAIR_BYTES;
    return this.chunk(id).pairs.subarray(at, at + PAIR_BYTES);
  }

  /** True when entry id's pair hash equals pair. */
  pairEquals(id: number, pair: Uint8Array): boolean {
    const pairs = this.chunk(id).pairs;
    const at = (id & IN_CHUNK) * PAIR_BYTES;
    for (let k = 0; k < PAIR_BYTES; k++) if (pairs[at + k] !== pair[k]) return false;
    return true;
  }

  setPair(id: number, pair: Uint8Array): void {
    if (pair.length !== PAIR_BYTES)
      throw new RangeError(`key index: a pair hash holds ${PAIR_BYTES} bytes, got ${pair.length}`);
    this.chunk(id).pairs.set(pair, (id & IN_CHUNK) * PAIR_BYTES);
  }

  /** Ids of the entries in leaf, most recently added first. */
  idsInLeaf(leaf: number): number[] {
    const ids: number[] = [];
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount) return ids;
    for (let id = this.heads[leaf] as number; id >= 0; id = this.nextOf(id)) ids.push(id);
    return ids;
  }

  private nextOf(id: number): number {
    return this.chunk(id).next[id & IN_CHUNK] as number;
  }

  /** The arena chunk and offset in it of entry id's key, and its length. */
  private keyAt(id: number): [Buffer, number, number] {
    const c = this.chunk(id);
    const i = id & IN_CHUNK;
    const off = c.keyOff[i] as number;
    return [this.arena[off >>> ARENA_BITS] as Buffer, off & (ARENA_CHUNK - 1), c.keyLen[i] as number];
  }

  /** The table hash of entry id's key. */
  private hashOf(id: number): number {
    const [chunk, at, len] = this.keyAt(id);
    return this.hash(chunk, at, len);
  }

  private sameKey(id: number, key: Buffer): boolean {
    const [chunk, at, len] = this.keyAt(id);
    return len === key.length && key.compare(chunk, at, at + len) === 0;
  }

  private assertLive(id: number): void {
    if (!this.isLive(id)) throw new RangeError(`key index: no entry ${id}`);
  }

  /** Copies key into the arena (a new chunk when the last one cannot hold it); returns its offset. */
  private store(key: Buffer): number {
    if (this.arenaTail + key.length > ARENA_CHUNK) {
      this.arena.push(Buffer.allocUnsafe(ARENA_CHUNK));
      this.arenaTail = 0;
    }
    const chunk = this.arena.length - 1;
    key.copy(this.arena[chunk] as Buffer, this.arenaTail);
    const off = chunk * ARENA_CHUNK + this.arenaTail;
    this.arenaTail += key.length;
    this.arenaLive += key.length;
    return off;
  }

  /** Rewrites the arena with only the live keys. */
  private compact(): void {
    const old = this.arena;
    this.arena = [];
    this.arenaTail = ARENA_CHUNK;
    this.arenaLive = 0;
    this.arenaGarbage = 0;
    for (let id = 0; id < this.high; id++) {
      const c = this.chunk(id);
      const i = id & IN_CHUNK;
      const len = c.keyLen[i] as number;
      if (len === 0) continue;
      const off = c.keyOff[i] as number;
      const at = off & (ARENA_CHUNK - 1);
      c.keyOff[i] = this.store((old[off >>> ARENA_BITS] as Buffer).subarray(at, at + len));
    }
  }

  private rehash(slots: number): void {
    this.table = new Int32Array(slots);
    this.mask = slots - 1;
    for (let id = 0; id < this.high; id++) {
      if (!this.isLive(id)) continue;
      let slot = this.hashOf(id) & this.mask;
      while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
      this.table[slot] = id + 1;
    }
  }
}
