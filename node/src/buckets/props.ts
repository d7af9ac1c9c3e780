/**
 * Per-bucket replication settings (n, r, w, conflict mode): validation, and the node's copy of
 * every bucket's props, reconciled across nodes last-writer-wins by timestamp.
 */
import { InvalidRequestError } from '../errors.js';
import type { ObjectStore } from '../storage/store.js';

export type ConflictMode = 'siblings' | 'lww';

export interface BucketProps {
  n: number;
  r: number;
  w: number;
  conflict: ConflictMode;
  /** Default time-to-live of values written without ?ttl=, in seconds; 0 = never expire. */
  ttl: number;
}

/** A bucket's props with the time they were set, the unit of replication between nodes. */
export interface StampedProps {
  bucket: string;
  props: BucketProps;
  /** ms since epoch when set; the newest wins, ties broken by a stable comparison of the JSON. */
  ts: number;
}

/** Largest replication factor accepted. */
export const MAX_N = 16;
/** Longest time-to-live accepted, in seconds (10 years). */
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** Metadata names of the stored props: `props:<bucket>`. */
export const PROPS_META_PREFIX = 'props:';
const FIELDS = new Set(['n', 'r', 'w', 'conflict', 'ttl']);

const bad = (message: string) => new InvalidRequestError('invalid_props', message);

/** Applies a client's partial props update to the current props; throws InvalidRequestError on anything invalid. */
export function applyPropsUpdate(current: BucketProps, input: unknown): BucketProps {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw bad('props must be a JSON object');
  const body = input as Record<string, unknown>;
  for (const field of Object.keys(body)) {
    if (!FIELDS.has(field)) throw bad(`unknown prop "${field}" (allowed: n, r, w, conflict, ttl)`);
  }
  const next = { ...current };
  for (const field of ['n', 'r', 'w'] as const) {
    if (body[field] === undefined) continue;
    const v = body[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_N) {
      throw bad(`${field} must be an integer from 1 to ${MAX_N}`);
    }
    next[field] = v;
  }
  if (body.conflict !== undefined) {
    if (body.conflict !== 'siblings' && body.conflict !== 'lww')
      throw bad('conflict must be "siblings" or "lww"');
    next.conflict = body.conflict;
  }
  if (body.ttl !== undefined) {
    const ttl = body.ttl;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL_SECONDS) {
      throw bad(`ttl must be an integer number of seconds from 0 (never expire) to ${MAX_TTL_SECONDS}`);
    }
    next.ttl = ttl;
  }
  if (next.r > next.n || next.w > next.n)
    throw bad(`r and w must not exceed n (n=${next.n}, r=${next.r}, w=${next.w})`);
  return next;
}

const newer = (a: StampedProps, b: StampedProps | undefined) =>
  !b || a.ts > b.ts || (a.ts === b.ts && JSON.stringify(a.props) > JSON.stringify(b.props));

/** This node's view of all bucket props, persisted in the store's metadata. */
/** Told of each change of a bucket's effective props, once it is persisted. */
export type PropsListener = (bucket: string, before: BucketProps, after: BucketProps) => Promise<void> | void;

export class BucketPropsTable {
  private readonly table = new Map<string, StampedProps>();
  private readonly listeners: PropsListener[] = [];

  private constructor(
    private readonly store: ObjectStore,
    readonly defaults: BucketProps,
  ) {}

  static async load(store: ObjectStore, defaults: BucketProps): Promise<BucketPropsTable> {
    const t = new BucketPropsTable(store, defaults);
    for (const [, bytes] of await store.listMeta(PROPS_META_PREFIX)) {
      const stamped = JSON.parse(bytes.toString('utf8')) as StampedProps;
      t.table.set(stamped.bucket, stamped);
    }
    return t;
  }

  /** Effective props of a bucket (defaults when never set). */
  get(bucket: string): BucketProps {
    const set = this.table.get(bucket)?.props;
    // Props stored before a field existed take that field's default.
    return set ? { ...this.defaults, ...set } : this.defaults;
  }

  all(): StampedProps[] {
    return [...this.table.values()];
  }

  /** Keeps the given props if they are newer than what this node has; resolves true when they were applied. */
  async merge(stamped: StampedProps): Promise<boolean> {
    if (!newer(stamped, this.table.get(stamped.bucket))) return false;
    const before = this.get(stamped.bucket);
    this.table.set(stamped.bucket, stamped);
    await this.store.putMeta(`${PROPS_META_PREFIX}${stamped.bucket}`, Buffer.from(JSON.stringify(stamped)));
    const after = this.get(stamped.bucket);
    for (const listener of this.listeners) await listener(stamped.bucket, before, after);
    return true;
  }

  onChange(listener: PropsListener): void {
    this.listeners.push(listener);
  }
}
