/**
 * The node's LevelDB database: objects under the key prefix "o:", metadata (bucket props) under "m:".
 * Writes go through modify(), which serializes read-modify-write per key.
 */
import { mkdir } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import type { Clock } from '../version/dvvset.js';
import { decodeObject, encodeObject } from './codec.js';
import { KeyedMutex } from './keyed-mutex.js';
import { WriteBatcher } from './write-batcher.js';

/** A prefixed part of the node's database, for subsystems that keep their own records. */
export interface KeySpace {
  get(key: string): Buffer | undefined;
  put(key: string, value: Buffer): Promise<void>;
  del(key: string): Promise<void>;
  batch(
    ops: Array<{ type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string }>,
  ): Promise<void>;
  /** Entries in key order (or reverse), optionally within [gte, lt) and at most limit of them. */
  entries(range?: KeyRange): AsyncGenerator<[string, Buffer]>;
  /** The keys alone, as entries gives them: no value is copied out of LevelDB. */
  keys(range?: KeyRange): AsyncGenerator<string>;
}

/** A range of a key space: [gte, lt), at most limit keys, from the last one when reverse. */
export interface KeyRange {
  gte?: string;
  lt?: string;
  limit?: number;
  reverse?: boolean;
}

/** Told of each object write: the object before (undefined when new) and after. */
/** after is undefined when the object was deleted (tombstone garbage collection). */
export type WriteListener = (
  bucket: string,
  key: string,
  before: Clock | undefined,
  after: Clock | undefined,
) => void;

export interface StoreOptions {
  /** fsync each write before it is acknowledged. */
  syncWrites: boolean;
}

const OBJECTS = 'o:';
const META = 'm:';
/** Where a scan stopped: resume with scan(scanCursor(bucket, key)). */
export const scanCursor = (bucket: string, key: string) => `${bucket}\u0000${key}`;
/** LevelDB key of an object; bucket names cannot hold NUL, so the split is unambiguous. */
const objectKey = (bucket: string, key: string) => `${OBJECTS}${bucket}\u0000${key}`;

/** A key space's range as LevelDB's iterator options. */
function levelRange(prefix: string, range: KeyRange) {
  return {
    gte: prefix + (range.gte ?? ''),
    lt: range.lt === undefined ? `${prefix}\uffff` : prefix + range.lt,
    limit: range.limit ?? -1,
    reverse: range.reverse ?? false,
  };
}

export class ObjectStore {
  private readonly locks = new KeyedMutex();
  private readonly writeListeners: WriteListener[] = [];
  private readonly writes: WriteBatcher;
  /** Objects created minus objects deleted since open (plus the count, once countKeys has finished). */
  private keys = 0;
  /** Objects the count has seen so far; undefined once it finished (keys is then exact). */
  private counting: number | undefined = 0;
  /** Whether the database held any object when it was opened. */
  private heldObjects = false;
  private counted: Promise<void> | undefined;
  /** Writes issued to LevelDB whose effect on keys is not applied yet. */
  private inFlight = 0;
  private idle: (() => void) | undefined;
  /** Set while the count takes its snapshot: new writes wait for it. */
  private gate: Promise<void> | undefined;

  private constructor(
    private readonly db: ClassicLevel<string, Buffer>,
    private readonly options: StoreOptions,
  ) {
    this.writes = new WriteBatcher(db, options.syncWrites);
  }

  /**
   * Opens (creating if needed) the database in dir. Its objects are counted in the background
   * (countKeys), so opening takes the same time whatever the data size.
   */
  static async open(dir: string, options: StoreOptions): Promise<ObjectStore> {
    await mkdir(dir, { recursive: true });
    const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' });
    await db.open();
    const store = new ObjectStore(db, options);
    for await (const _ of db.keys({ gte: OBJECTS, lt: `${OBJECTS}\uffff`, limit: 1 }))
      store.heldObjects = true;
    return store;
  }

  /**
   * Counts the objects (once; later calls return the same promise): keyCount is exact when it resolves.
   * The count reads a snapshot taken while no write is in flight (new writes wait the moment it takes),
   * and every write after it adjusts the count, so none is counted twice or missed.
   */
  countKeys(): Promise<void> {
    this.counted ??= (async () => {
      let release!: () => void;
      this.gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let iterator: ReturnType<typeof this.db.keys>;
      try {
        if (this.inFlight > 0)
          await new Promise<void>((resolve) => {
            this.idle = resolve;
          });
        // The iterator's snapshot is taken here, synchronously; from now on writes count on top of it.
        iterator = this.db.keys({ gte: OBJECTS, lt: `${OBJECTS}\uffff` });
        this.keys = 0;
      } finally {
        this.gate = undefined;
        release();
      }
      let seen = 0;
      try {
        for await (const _ of iterator) this.counting = ++seen;
      } finally {
        await iterator.close();
      }
      this.keys += seen;
      this.counting = undefined;
    })();
    return this.counted;
  }

  /** True once countKeys has finished: keyCount is then exact. */
  get keyCountExact(): boolean {
    return this.counting === undefined;
  }

  /** Waits while countKeys takes its snapshot (a write then brackets itself with inFlight/endWrite). */
  private async passGate(): Promise<void> {
    while (this.gate) await this.gate;
  }

  private endWrite(): void {
    if (--this.inFlight === 0 && this.idle) {
      const idle = this.idle;
      this.idle = undefined;
      idle();
    }
  }

  /** The stored object, or undefined when the key was never written here. */
  get(bucket: string, key: string): Clock | undefined {
    const bytes = this.getRaw(bucket, key);
    return bytes === undefined ? undefined : decodeObject(bytes);
  }

  /**
   * The stored object's encoded bytes, or undefined (replicas answer reads without decoding).
   * Point reads are synchronous: a read served from LevelDB's caches costs about a quarter of the CPU of
   * the thread-pool round trip of the async get (measured: 1.9 vs 7.4 us), which dominates on few cores.
   * A read that misses every cache blocks the event loop for one disk read.
   */
  getRaw(bucket: string, key: string): Buffer | undefined {
    return this.db.getSync(objectKey(bucket, key));
  }

  /**
   * Replaces the object with fn(current) and resolves once the write is in LevelDB's log.
   * Calls for the same key run one at a time. When fn returns current itself, nothing is written.
   */
  modify(bucket: string, key: string, fn: (current: Clock | undefined) => Clock): Promise<Clock> {
    return this.mutate(bucket, key, fn) as Promise<Clock>;
  }

  /**
   * Deletes the object when keep(current) is false, under the key's lock (so no write slips in between
   * the check and the delete). Resolves with what happened: deleted, kept, or absent (nothing to delete).
   */
  deleteUnless(
    bucket: string,
    key: string,
    keep: (current: Clock) => boolean,
  ): Promise<'deleted' | 'kept' | 'absent'> {
    const k = objectKey(bucket, key);
    return this.locks.run(k, async () => {
      const bytes = this.db.getSync(k);
      if (bytes === undefined) return 'absent';
      const current = decodeObject(bytes);
      if (keep(current)) return 'kept';
      if (this.gate) await this.passGate();
      this.inFlight++;
      try {
        await this.db.del(k, { sync: this.options.syncWrites });
        this.keys--;
      } finally {
        this.endWrite();
      }
      for (const listener of this.writeListeners) listener(bucket, key, current, undefined);
      return 'deleted';
    });
  }

  /** Calls listener after every durable object write (e.g. to keep Merkle trees up to date). */
  onWrite(listener: WriteListener): void {
    this.writeListeners.push(listener);
  }

  /** Like modify, but leaves a key that does not exist alone. */
  async modifyExisting(bucket: string, key: string, fn: (current: Clock) => Clock): Promise<void> {
    await this.mutate(bucket, key, (current) => current && fn(current));
  }

  /** Read-modify-write under the key's lock; fn returning current (or undefined) writes nothing. */
  private mutate(
    bucket: string,
    key: string,
    fn: (current: Clock | undefined) => Clock | undefined,
  ): Promise<Clock | undefined> {
    const k = objectKey(bucket, key);
    return this.locks.run(k, async () => {
      const bytes = this.db.getSync(k);
      const current = bytes === undefined ? undefined : decodeObject(bytes);
      const next = fn(current);
      if (next === current || next === undefined) return current;
      const encoded = encodeObject(next);
      if (this.gate) await this.passGate();
      this.inFlight++;
      try {
        await this.writes.put(k, encoded);
        if (bytes === undefined) this.keys++;
      } finally {
        this.endWrite();
      }
      for (const listener of this.writeListeners) listener(bucket, key, current, next);
      return next;
    });
  }

  /**
   * Every stored object as (bucket, key, encoded bytes), in key order, from just after the cursor
   * (scanCursor(bucket, key) of the last one seen) when given; the iterator reads a snapshot.
   */
  async *scan(after?: string): AsyncGenerator<[string, string, Buffer]> {
    const from = after === undefined ? { gte: OBJECTS } : { gt: OBJECTS + after };
    for await (const [k, v] of this.db.iterator({ ...from, lt: `${OBJECTS}\uffff` })) {
      const nul = k.indexOf('\u0000');
      yield [k.slice(OBJECTS.length, nul), k.slice(nul + 1), v];
    }
  }

  /** A metadata value (e.g. bucket props), or undefined. */
  getMeta(name: string): Promise<Buffer | undefined> {
    return this.db.get(META + name);
  }

  /** Writes a metadata value; sync forces an fsync whatever --sync-writes says. */
  async putMeta(name: string, value: Buffer, opts: { sync?: boolean } = {}): Promise<void> {
    await this.db.put(META + name, value, { sync: opts.sync ?? this.options.syncWrites });
  }

  async delMeta(name: string): Promise<void> {
    await this.db.del(META + name, { sync: this.options.syncWrites });
  }

  /** All metadata entries whose name starts with prefix. */
  async listMeta(prefix: string): Promise<Array<[string, Buffer]>> {
    const out: Array<[string, Buffer]> = [];
    const from = META + prefix;
    for await (const [k, v] of this.db.iterator({ gte: from, lt: `${from}\uffff` }))
      out.push([k.slice(META.length), v]);
    return out;
  }

  /**
   * Deletes every object, every key space's entries and the metadata keep does not name, then the
   * metadata entry `last` (synced): a crash midway leaves `last` for the caller to find and finish with.
   * Only before the node serves (nothing else writes meanwhile).
   */
  async clearAllBut(keep: (name: string) => boolean, last: string): Promise<void> {
    await this.db.clear({ lt: META });
    await this.db.clear({ gte: `${META}\uffff` });
    for (const [name] of await this.listMeta(''))
      if (name !== last && !keep(name)) await this.db.del(META + name);
    await this.db.del(META + last, { sync: true });
    this.heldObjects = false;
    this.keys = 0;
  }

  /**
   * A separate key space of this database (e.g. hints, Merkle metadata), named by a prefix that is not
   * "o:" or "m:". Its writes are synced like objects' when --sync-writes is on.
   */
  keySpace(prefix: string): KeySpace {
    if (prefix === OBJECTS || prefix === META || !/^[a-z]+:$/.test(prefix)) {
      throw new Error(`key space prefix "${prefix}" must be lowercase letters and a colon, not o: or m:`);
    }
    const db = this.db;
    const sync = this.options.syncWrites;
    return {
      get: (key) => db.getSync(prefix + key),
      put: (key, value) => db.put(prefix + key, value, { sync }),
      del: (key) => db.del(prefix + key, { sync }),
      batch: (ops) =>
        db.batch(
          ops.map((op) =>
            op.type === 'put'
              ? { type: 'put' as const, key: prefix + op.key, value: op.value }
              : { type: 'del' as const, key: prefix + op.key },
          ),
          { sync },
        ),
      async *entries(range = {}) {
        for await (const [k, v] of db.iterator(levelRange(prefix, range))) yield [k.slice(prefix.length), v];
      },
      async *keys(range = {}) {
        for await (const k of db.keys(levelRange(prefix, range))) yield k.slice(prefix.length);
      },
    };
  }

  /**
   * Number of objects stored (tombstones included). Until countKeys has finished, the objects counted
   * so far with the writes since, and at least 1 when the database held any object at open.
   */
  get keyCount(): number {
    if (this.counting === undefined) return this.keys;
    return Math.max(this.counting + this.keys, this.heldObjects ? 1 : 0);
  }

  /** LevelDB's estimate of the bytes the objects take on disk. */
  approximateBytes(): Promise<number> {
    return this.db.approximateSize(OBJECTS, `${OBJECTS}\uffff`);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
