/**
 * Raising a bucket's n moves data: each node that becomes a new replica of some of the bucket's keys
 * pulls them from the members that hold them, so the n-th copy exists at once rather than whenever
 * anti-entropy finds it. (Lowering n is the other half: the replicas that no longer replicate a key
 * delete it in the next cleanup, streaming/cleanup.ts.)
 *
 * Every node learns the new n from the props push; it waits --ring-settle-ms (so coordinators still
 * writing with the old n have learned the new one), then pulls, from every other member not held down,
 * the bucket's keys it replicates with the new n and did not with the old. The change is recorded in the
 * database until done, so a restart resumes it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Membership } from '../membership/membership.js';
import type { ObjectStore } from '../storage/store.js';
import { describeRing } from './plan.js';
import { type PullDeps, pullAll } from './pull.js';

const RECORD = 'widen:';

interface WidenRecord {
  bucket: string;
  fromN: number;
  toN: number;
}

export interface WideningStatus extends WidenRecord {
  keys: number;
  bytes: number;
  startedAt: string;
  finishedAt: string | null;
  /** Members given up on (they kept failing): anti-entropy repairs what they hold. */
  skipped: string[];
}

export interface WideningOptions extends PullDeps {
  self: string;
  store: ObjectStore;
  membership: Membership;
  settleMs: number;
}

export class ReplicationWidening {
  private readonly pending = new Map<string, WidenRecord>();
  private readonly done: WideningStatus[] = [];
  private current: WideningStatus | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: WideningOptions) {}

  /** Resumes the widenings a restart interrupted. */
  async resume(): Promise<void> {
    for (const [, bytes] of await this.opts.store.listMeta(RECORD)) {
      const record = JSON.parse(bytes.toString('utf8')) as WidenRecord;
      this.pending.set(record.bucket, record);
    }
    this.kick();
  }

  /** A bucket's n changed from fromN to toN (either way); a raise is streamed, a lowering cancels one. */
  async changed(bucket: string, fromN: number, toN: number): Promise<void> {
    const queued = this.pending.get(bucket);
    // Raised twice before streaming: from the lowest n this node held the bucket with.
    const record: WidenRecord = { bucket, fromN: Math.min(fromN, queued?.fromN ?? fromN), toN };
    if (record.toN <= record.fromN) {
      this.pending.delete(bucket);
      await this.opts.store.delMeta(RECORD + bucket);
      return;
    }
    this.pending.set(bucket, record);
    await this.opts.store.putMeta(RECORD + bucket, Buffer.from(JSON.stringify(record)), { sync: true });
    this.kick();
  }

  /** The widening under way and the last ones finished, oldest first. */
  status(): WideningStatus[] {
    return [...this.done, ...(this.current ? [{ ...this.current }] : [])];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private kick(): void {
    if (this.pending.size === 0 || this.stopped) return;
    this.running ??= this.loop()
      .catch((err) => this.opts.log.error({ err }, 'widening failed; it resumes at the next start'))
      .finally(() => {
        this.running = undefined;
        this.kick();
      });
  }

  private async loop(): Promise<void> {
    await sleep(this.opts.settleMs);
    for (const [bucket, record] of this.pending) {
      if (this.stopped) return;
      this.pending.delete(bucket);
      await this.widen(record);
      // Done unless it was raised again meanwhile (then the newer record is queued and kept).
      if (!this.pending.has(bucket) && !this.stopped) await this.opts.store.delMeta(RECORD + bucket);
    }
  }

  private async widen(record: WidenRecord): Promise<void> {
    const { membership, self, log } = this.opts;
    const status: WideningStatus = {
      ...record,
      keys: 0,
      bytes: 0,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      skipped: [],
    };
    this.current = status;
    const ring = describeRing(membership.ring());
    const sources = membership
      .members()
      .filter((m) => m.id !== self && !['down', 'removed'].includes(membership.state(m.id)))
      .map((m) => m.id);
    log.info({ ...record, sources }, 'bucket n raised: pulling the keys this node now replicates');
    const spec = { target: self, old: ring, next: ring, mode: 'all' as const, widen: record };
    await Promise.all(
      sources.map(async (source) => {
        const complete = await pullAll(this.opts, source, spec, status, () => this.stopped);
        if (!complete && !this.stopped) status.skipped.push(source);
      }),
    );
    status.finishedAt = new Date().toISOString();
    this.current = undefined;
    this.done.push(status);
    if (this.done.length > 10) this.done.shift();
    log.info({ ...record, keys: status.keys, bytes: status.bytes }, 'bucket n raised: widening done');
  }
}
