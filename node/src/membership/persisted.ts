/**
 * What a gossip node remembers of its cluster across restarts, in its data directory:
 * - its incarnation: a restarted node must announce a generation greater than any it announced before,
 *   or its peers keep its old entry and hold it down for ever. The wall clock alone cannot promise that
 *   (a clock set back, a VM restored), so the last generation is kept and the next one is
 *   max(now, last + 1), persisted (fsynced) before the node gossips;
 * - the members it knew, so that a restarted node starts from the ring it belonged to, and waits to hear
 *   from one of them before it serves (membership/gossip.ts), instead of starting from a ring of itself;
 * - its rack, fixed when it first starts like its tokens: replicas are placed by rack, so a rack that
 *   changed at a restart (a zone label that appeared after a Kubernetes upgrade, a pod rescheduled with a
 *   different label) would move replicas without streaming them, and reads could miss acknowledged
 *   writes until anti-entropy caught up. A different --rack later is logged and not taken.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../storage/store.js';
import { type MemberEntry, validateEntry } from './gossip-state.js';

const GENERATION = 'gossip-generation';
const MEMBERS = 'gossip-members';
const RACK = 'gossip-rack';
/**
 * The metadata entries this module keeps when a node rejoins after leaving (streaming/rejoin.ts): not its
 * rack, which a new member takes afresh.
 */
export const MEMBERSHIP_META: readonly string[] = [GENERATION, MEMBERS];

export async function nextGeneration(store: ObjectStore, now: number = Date.now()): Promise<number> {
  const saved = await store.getMeta(GENERATION);
  const last = saved ? Number(saved.toString('utf8')) : 0;
  const next = Math.max(Math.floor(now), Number.isSafeInteger(last) ? last + 1 : 0);
  await store.putMeta(GENERATION, Buffer.from(String(next)), { sync: true });
  return next;
}

/**
 * This node's rack ('' for none): the one kept from its first start, else the one its saved member table
 * gives it (a data directory from before racks were kept), else the configured one; kept from now on.
 */
export async function keptRack(
  store: ObjectStore,
  self: string,
  configured: string,
  known: readonly MemberEntry[],
  log: Logger,
): Promise<string> {
  let rack = savedRack(await store.getMeta(RACK));
  if (rack === undefined) {
    const entry = known.find((e) => e.id === self);
    rack = entry ? (entry.rack ?? '') : configured;
    await store.putMeta(RACK, Buffer.from(JSON.stringify({ rack })), { sync: true });
  }
  if (rack !== configured) {
    log.warn(
      { rack: rack || null, configured: configured || null },
      'this node keeps the rack it joined with: a rack change would move replicas without streaming them; to change it, decommission the node and join it again with an empty data directory',
    );
  }
  return rack;
}

function savedRack(bytes: Buffer | undefined): string | undefined {
  try {
    const rack = bytes && (JSON.parse(bytes.toString('utf8')) as { rack?: unknown }).rack;
    return typeof rack === 'string' ? rack : undefined;
  } catch {
    return undefined; // unreadable: taken again from the member table or the configuration
  }
}

/** The persisted member table: loaded once at start, saved (coalesced, latest wins) when it changes. */
export class KnownMembers {
  private writing: Promise<void> | undefined;
  private next: MemberEntry[] | undefined;

  private constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    readonly entries: MemberEntry[],
  ) {}

  static async load(store: ObjectStore, log: Logger): Promise<KnownMembers> {
    const bytes = await store.getMeta(MEMBERS);
    let entries: MemberEntry[] = [];
    if (bytes) {
      try {
        const parsed = JSON.parse(bytes.toString('utf8')) as unknown[];
        entries = parsed.map((e) => validateEntry(e));
      } catch (err) {
        // Unreadable: start as if new rather than refuse to start; gossip relearns the members.
        log.warn({ err }, 'the saved member table is unreadable; ignoring it');
      }
    }
    return new KnownMembers(store, log, entries);
  }

  save(entries: MemberEntry[]): void {
    this.next = entries;
    this.writing ??= this.flush();
  }

  private async flush(): Promise<void> {
    while (this.next) {
      const entries = this.next;
      this.next = undefined;
      try {
        await this.store.putMeta(MEMBERS, Buffer.from(JSON.stringify(entries)));
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'could not save the member table');
      }
    }
    this.writing = undefined;
  }

  /** Waits for a save under way (before the database closes). */
  async settled(): Promise<void> {
    await this.writing;
  }
}
