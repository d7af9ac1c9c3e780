/**
 * A node started on the data directory of a decommission it completed (its record says `left`). Such a
 * node recorded `left` only after every object it held was pushed to the members that replicate it
 * without it and every hint it kept was handed over (streamer.ts, runDecommission), and from then on it
 * takes no replica request and coordinates none (node.ts): what the directory holds is held elsewhere.
 * With --rejoin-after-leave it is cleared and the node joins again as a new member, through the join
 * path of an empty data directory (tokens from --initial-tokens, streamed in before it serves). It keeps
 * its gossip generation (incarnations only grow: invariant 8), the member table (so it waits to hear
 * from the ring it knew and never founds another: --bootstrap counts only on a first start) and the
 * bucket props (the join plans with every bucket's n).
 *
 * Only `left` is cleared. A member an admin removed (POST /admin/members/{id}/remove) never handed its
 * data over: it keeps refusing to start on it (RemovedMemberError), whatever this flag says.
 */
import { unlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import { PROPS_META_PREFIX } from '../buckets/props.js';
import { InvalidRequestError } from '../errors.js';
import { HINTS_KEY_SPACE } from '../handoff/hint-queue.js';
import { MEMBERSHIP_META } from '../membership/persisted.js';
import type { ObjectStore } from '../storage/store.js';
import { NODE_RECORD } from './streamer.js';

export interface LeftDirectory {
  nodeId: string;
  dataDir: string;
  /** Whether the node may clear it (--rejoin-after-leave). */
  rejoin: boolean;
  /** Files beside the database that describe its contents (the anti-entropy key index). */
  derivedFiles: string[];
  log: Logger;
}

/**
 * Clears the data directory of a node that has left, so it joins again as a new member; throws
 * InvalidRequestError('decommissioned') when it may not (no --rejoin-after-leave, or hints remain that
 * were never handed over). The store stays open either way.
 */
export async function clearAfterLeave(store: ObjectStore, dir: LeftDirectory): Promise<void> {
  if (!dir.rejoin) {
    throw new InvalidRequestError(
      'decommissioned',
      `node ${dir.nodeId} was decommissioned and has left the cluster; to join again as a new member, start it with --rejoin-after-leave (its data, all handed over, is cleared) or with an empty --data-dir (${dir.dataDir})`,
    );
  }
  // Never the case after a decommission that finished; if it is, these may be the last copies of writes.
  for await (const _ of store.keySpace(HINTS_KEY_SPACE).entries({ limit: 1 })) {
    throw new InvalidRequestError(
      'decommissioned',
      `node ${dir.nodeId} has left the cluster but its data directory (${dir.dataDir}) still holds hints it did not hand over, which may be the last copies of writes: it is kept and the node does not start; empty the data directory to join again once you accept losing them`,
    );
  }
  // The key index first: a crash after this point finds the record and clears again.
  for (const file of dir.derivedFiles) {
    for (const path of [file, `${file}.tmp`]) await unlink(path).catch(() => undefined);
  }
  const keep = (name: string) => MEMBERSHIP_META.includes(name) || name.startsWith(PROPS_META_PREFIX);
  await store.clearAllBut(keep, NODE_RECORD);
  dir.log.warn(
    { dataDir: dir.dataDir },
    'this node had left the cluster (its data handed over): data cleared, joining again as a new member',
  );
}
