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

export class StreamSource {
  constructor(
    private readonly self: string,
    private readonly store: ObjectStore,
    private readonly props: BucketPropsTable,
    private readonly merge: (req: ReplicaRequest) => Promise<unknown>,
  ) {}

  handle(req: StreamRequest): Promise<PullReply | { merged: number }> {
    return req.op === 'stream.pull' ? this.pull(req) : this.push(req.entries);
  }

  private async pull(req: Extract<StreamRequest, { op: 'stream.pull' }>): Promise<PullReply> {
    const old = ringFromDesc(req.old);
    const next = ringFromDesc(req.next);
    const entries: StreamEntry[] = [];
    let bytes = 0;
    let scanned = 0;
    let looked = 0;
    let cursor: string | null = null;
    for await (const [bucket, key, obj] of this.store.scan(req.after ?? undefined)) {
      cursor = scanCursor(bucket, key);
      scanned += obj.length;
      const n = this.props.get(bucket).n;
      if (sendsToJoiner(old, next, hashKey(bucket, key), n, req.target, this.self, req.mode)) {
        entries.push([bucket, key, obj]);
        bytes += obj.length;
      }
      if (bytes >= req.maxBytes || ++looked >= MAX_SCANNED_PER_PAGE) {
        return { entries, next: cursor, scanned, total: await this.store.approximateBytes() };
      }
    }
    return { entries, next: null, scanned, total: await this.store.approximateBytes() };
  }

  /** Merges a pushed page, all keys at once (they group-commit); resolves when all are durable. */
  private async push(entries: StreamEntry[]): Promise<{ merged: number }> {
    await Promise.all(
      entries.map(([b, k, obj]) =>
        this.merge({ op: 'merge', b, k, obj, lww: this.props.get(b).conflict === 'lww' }),
      ),
    );
    return { merged: entries.length };
  }
}
