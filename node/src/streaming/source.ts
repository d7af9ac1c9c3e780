/**
 * The serving side of streams: answers a joining node's pulls with pages of the keys it must take, and
 * merges the pages a leaving node pushes. Pages are bounded by bytes sent and by keys scanned, so one
 * request never holds a node busy for long, and carry the cursor to resume from.
 */
import type { BucketPropsTable } from '../buckets/props.js';
import type { ReplicaRequest } from '../replica/messages.js';
import { hashKey } from '../ring/index.js';
import { type ObjectStore, scanCursor } from '../storage/store.js';
import { type JoinMode, type RingDesc, ringFromDesc, sendsToJoiner } from './plan.js';

/** One object in a stream: bucket, key and its encoded bytes. */
export type StreamEntry = [bucket: string, key: string, obj: Buffer];

export type StreamRequest =
  | {
      op: 'stream.pull';
      target: string;
      old: RingDesc;
      next: RingDesc;
      mode: JoinMode;
      /** Cursor to resume after; null from the start. */
      after: string | null;
      maxBytes: number;
      /**
       * A change of one bucket's n (a raise: the target is a new replica): only that bucket's keys, placed
       * with n = toN, and only those the target did not replicate with n = fromN.
       */
      widen?: { bucket: string; fromN: number; toN: number };
    }
  | { op: 'stream.push'; entries: StreamEntry[] };

export interface PullReply {
  entries: StreamEntry[];
  /** Cursor of the last key scanned, or null when the scan reached the end. */
  next: string | null;
  /** Bytes of objects scanned for this page (sent or not), for progress. */
  scanned: number;
  /** Estimated bytes of all objects on the source, for progress. */
  total: number;
}

/** Keys looked at per page at most, so a page that sends little still returns soon. */
const MAX_SCANNED_PER_PAGE = 20_000;

/** Size of a stream entry's object. */
export const entryBytes = (entries: StreamEntry[]) => entries.reduce((sum, [, , obj]) => sum + obj.length, 0);

/**
 * One page of a stream's scan of the store, from just after cursor `after`: calls take for each object
 * and stops once take has taken maxBytes (it returns the bytes it took) or MAX_SCANNED_PER_PAGE objects
 * were looked at. take returns null to end the scan there (past the range it wants). Resolves with the
 * cursor to resume from (null: the scan reached the end) and the bytes of objects scanned.
 */
export async function scanPage(
  store: ObjectStore,
  after: string | null,
  maxBytes: number,
  take: (bucket: string, key: string, obj: Buffer) => number | null,
): Promise<{ next: string | null; scanned: number }> {
  let [taken, scanned, looked] = [0, 0, 0];
  for await (const [bucket, key, obj] of store.scan(after ?? undefined)) {
    scanned += obj.length;
    const took = take(bucket, key, obj);
    if (took === null) return { next: null, scanned };
    taken += took;
    if (taken >= maxBytes || ++looked >= MAX_SCANNED_PER_PAGE)
      return { next: scanCursor(bucket, key), scanned };
  }
  return { next: null, scanned };
}

/** Merges a page of entries into the local replica, all keys at once (they group-commit); resolves when all are durable. */
export async function mergeEntries(
  entries: StreamEntry[],
  props: BucketPropsTable,
  merge: (req: ReplicaRequest) => Promise<unknown>,
): Promise<void> {
  await Promise.all(
    entries.map(([b, k, obj]) => merge({ op: 'merge', b, k, obj, lww: props.get(b).conflict === 'lww' })),
  );
}

export class StreamSource {
  constructor(
    private readonly self: string,
    private readonly store: ObjectStore,
    private readonly props: BucketPropsTable,
    private readonly merge: (req: ReplicaRequest) => Promise<unknown>,
    /** Told of every page served: 'out' for pulled entries sent, 'in' for pushed entries merged. */
    private readonly onStreamed: (direction: 'in' | 'out', keys: number, bytes: number) => void,
  ) {}

  handle(req: StreamRequest): Promise<PullReply | { merged: number }> {
    return req.op === 'stream.pull' ? this.pull(req) : this.push(req.entries);
  }

  private async pull(req: Extract<StreamRequest, { op: 'stream.pull' }>): Promise<PullReply> {
    const old = ringFromDesc(req.old);
    const next = ringFromDesc(req.next);
    const entries: StreamEntry[] = [];
    const { widen } = req;
    // A widening scans one bucket: from its first key (bucket names hold no NUL) to its last.
    const after = req.after ?? (widen ? scanCursor(widen.bucket, '') : null);
    const page = await scanPage(this.store, after, req.maxBytes, (bucket, key, obj) => {
      if (widen && bucket !== widen.bucket) return null;
      const position = hashKey(bucket, key);
      const n = widen?.toN ?? this.props.get(bucket).n;
      if (!sendsToJoiner(old, next, position, n, req.target, this.self, req.mode)) return 0;
      if (widen && next.preferenceList(position, widen.fromN).includes(req.target)) return 0;
      entries.push([bucket, key, obj]);
      return obj.length;
    });
    this.onStreamed('out', entries.length, entryBytes(entries));
    return { entries, ...page, total: await this.store.approximateBytes() };
  }

  private async push(entries: StreamEntry[]): Promise<{ merged: number }> {
    await mergeEntries(entries, this.props, this.merge);
    this.onStreamed('in', entries.length, entryBytes(entries));
    return { merged: entries.length };
  }
}
