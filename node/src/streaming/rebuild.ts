/**
 * Rebuild of a node under static membership whose data directory is empty while the cluster holds data
 * (a wiped or replaced disk, or a node added to the member list): before it serves, it pulls every key
 * it replicates from every other member that answers. Gossip nodes do the same through their join
 * (streamer.ts, 'all' mode); a static ring has no join step, so this is it.
 *
 * Rules:
 * - a database that has served before (a marker written when the node first serves) or holds data is
 *   not wiped: the node serves at once, and hints and anti-entropy bring it what it missed while down;
 * - a node with no other member serves at once; otherwise it waits until one answers, and rebuilds when
 *   any that answered holds data (a new cluster, all empty, needs none);
 * - a marker is kept in the database while a rebuild runs, so a node restarted mid-rebuild (its store no
 *   longer empty) rebuilds again instead of serving a partial copy;
 * - a member that keeps failing is given up after a while (anti-entropy repairs its share later), so
 *   one dead member cannot keep the node down for ever.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Membership } from '../membership/membership.js';
import type { InfoReply } from '../replica/messages.js';
import type { ObjectStore } from '../storage/store.js';
import { describeRing } from './plan.js';
import { type PullDeps, pullAll } from './pull.js';

const MARKER = 'static-rebuild';
const SERVED = 'static-served';
const RETRY_MS = 1000;

export interface RebuildStatus {
  state: 'waiting' | 'rebuilding' | 'done';
  sources: string[];
  keys: number;
  bytes: number;
  startedAt: string;
  finishedAt: string | null;
  /** Members given up on (they kept failing): anti-entropy repairs what they hold. */
  skipped: string[];
}

export interface RebuildOptions extends PullDeps {
  self: string;
  store: ObjectStore;
  membership: Membership;
}

export class StaticRebuild {
  private current: RebuildStatus = {
    state: 'waiting',
    sources: [],
    keys: 0,
    bytes: 0,
    startedAt: new Date().toISOString(),
    finishedAt: null,
    skipped: [],
  };
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: RebuildOptions) {}

  /** True once this node may serve: nothing to rebuild, or the rebuild is done. */
  get serving(): boolean {
    return this.current.state === 'done';
  }

  status(): RebuildStatus {
    return { ...this.current, sources: [...this.current.sources], skipped: [...this.current.skipped] };
  }

  /** Decides whether to rebuild and does so in the background; `serving` turns true when done. */
  start(): void {
    this.running = this.run().catch((err) => {
      if (!this.stopped) this.opts.log.error({ err }, 'rebuild failed; restart the node to retry it');
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async run(): Promise<void> {
    const { store, membership, self, log } = this.opts;
    const others = membership.members().filter((m) => m.id !== self);
    const interrupted = (await store.getMeta(MARKER)) !== undefined;
    const served = (await store.getMeta(SERVED)) !== undefined || store.keyCount > 0;
    if (others.length === 0 || (served && !interrupted)) return this.finish();
    // Wait until a member answers, and learn which hold data.
    let holders: string[] | undefined;
    while (holders === undefined) {
      if (this.stopped) return;
      const replies = await Promise.allSettled(
        others.map((m) => this.opts.request(m.id, { op: 'info' }, this.opts.timeoutMs) as Promise<InfoReply>),
      );
      const keysOf = others.map((m, i) => {
        const r = replies[i]!;
        return { id: m.id, keys: r.status === 'fulfilled' ? (r.value.keys ?? 0) : undefined };
      });
      if (keysOf.some((k) => k.keys !== undefined))
        holders = keysOf.filter((k) => (k.keys ?? 0) > 0).map((k) => k.id);
      else await sleep(RETRY_MS);
    }
    if (holders.length === 0 && !interrupted) {
      log.info('no member holds data yet: nothing to rebuild');
      return this.finish();
    }
    await store.putMeta(MARKER, Buffer.from(new Date().toISOString()), { sync: true });
    this.current.state = 'rebuilding';
    this.current.sources = holders;
    log.warn(
      { sources: holders },
      'this node has no data while the cluster has: rebuilding it before serving',
    );
    await Promise.all(holders.map((peer) => this.pullFrom(peer)));
    if (this.stopped) return;
    await store.delMeta(MARKER);
    log.info(
      { keys: this.current.keys, bytes: this.current.bytes, skipped: this.current.skipped },
      'rebuild done',
    );
    return this.finish();
  }

  private async finish(): Promise<void> {
    await this.opts.store.putMeta(SERVED, Buffer.from(new Date().toISOString()), { sync: true });
    this.current.state = 'done';
    this.current.finishedAt = new Date().toISOString();
  }

  /** Pulls every key this node replicates from source; a source that keeps failing is given up. */
  private async pullFrom(source: string): Promise<void> {
    const ring = describeRing(this.opts.membership.ring());
    // The ring does not move (static): keys this node replicates, from a source that holds them.
    const spec = { target: this.opts.self, old: ring, next: ring, mode: 'all' as const };
    const complete = await pullAll(this.opts, source, spec, this.current, () => this.stopped);
    if (!complete && !this.stopped) this.current.skipped.push(source);
  }
}
