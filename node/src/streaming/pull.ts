/**
 * Pulling every page of one stream from one source into the local replica, with retries: what a static
 * rebuild and a replication widening share (a join keeps its own loop, which persists progress per page
 * and restarts from a new plan when a source is lost).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { BucketPropsTable } from '../buckets/props.js';
import type { ReplicaRequest } from '../replica/messages.js';
import { entryBytes, mergeEntries, type PullReply, type StreamRequest } from './source.js';

/** Bytes of objects per page of a stream. */
export const STREAM_PAGE_BYTES = 1 << 20;
const RETRY_MS = 1000;
/** Consecutive failed pages after which a source is given up. */
const GIVE_UP_AFTER = 30;

export type PullSpec = Omit<Extract<StreamRequest, { op: 'stream.pull' }>, 'op' | 'after' | 'maxBytes'>;

export interface PullDeps {
  props: BucketPropsTable;
  request: (peer: string, req: StreamRequest | ReplicaRequest, timeoutMs: number) => Promise<unknown>;
  mergeLocal: (req: ReplicaRequest) => Promise<unknown>;
  timeoutMs: number;
  log: Logger;
  onStreamed: (direction: 'in' | 'out', keys: number, bytes: number) => void;
}

export interface PullTally {
  keys: number;
  bytes: number;
}

/**
 * Pulls every page of spec from source and merges it; resolves true when the source sent all, false
 * when stopped() or when the source failed GIVE_UP_AFTER times in a row (anti-entropy repairs its share).
 */
export async function pullAll(
  deps: PullDeps,
  source: string,
  spec: PullSpec,
  tally: PullTally,
  stopped: () => boolean,
): Promise<boolean> {
  let after: string | null = null;
  let failures = 0;
  for (;;) {
    if (stopped()) return false;
    const req: StreamRequest = { op: 'stream.pull', ...spec, after, maxBytes: STREAM_PAGE_BYTES };
    let reply: PullReply;
    try {
      reply = (await deps.request(source, req, deps.timeoutMs)) as PullReply;
    } catch (err) {
      if (++failures >= GIVE_UP_AFTER) {
        deps.log.error({ source, err: (err as Error).message }, 'stream: giving up on a source');
        return false;
      }
      await sleep(RETRY_MS);
      continue;
    }
    failures = 0;
    await mergeEntries(reply.entries, deps.props, deps.mergeLocal);
    const bytes = entryBytes(reply.entries);
    tally.keys += reply.entries.length;
    tally.bytes += bytes;
    deps.onStreamed('in', reply.entries.length, bytes);
    if (reply.next === null) return true;
    after = reply.next;
  }
}
