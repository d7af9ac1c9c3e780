/**
 * What a gossip node remembers of its cluster across restarts, in its data directory:
 * - its incarnation: a restarted node must announce a generation greater than any it announced before,
 *   or its peers keep its old entry and hold it down for ever. The wall clock alone cannot promise that
 *   (a clock set back, a VM restored), so the last generation is kept and the next one is
 *   max(now, last + 1), persisted (fsynced) before the node gossips;
 * - the members it knew, so that a restarted node starts from the ring it belonged to, and waits to hear
 *   from one of them before it serves (membership/gossip.ts), instead of starting from a ring of itself.
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../storage/store.js';
import { type MemberEntry, validateEntry } from './gossip-state.js';

const GENERATION = 'gossip-generation';
const MEMBERS = 'gossip-members';

export async function nextGeneration(store: ObjectStore, now: number = Date.now()): Promise<number> {
  const saved = await store.getMeta(GENERATION);
  const last = saved ? Number(saved.toString('utf8')) : 0;
  const next = Math.max(Math.floor(now), Number.isSafeInteger(last) ? last + 1 : 0);
  await store.putMeta(GENERATION, Buffer.from(String(next)), { sync: true });
  return next;
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
