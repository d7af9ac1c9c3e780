import type { Informer, KubernetesObject, ObjectCache, V1Lease, V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { canAcquire } from '../../operator/src/leader-election.js';
import { parseGauge } from '../../operator/src/node-admin.js';
import { podViews } from '../../operator/src/reconcile.js';
import { keepRunning } from '../../operator/src/watches.js';

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** An informer that fails on demand, as client-node's does: it emits 'error' and stays stopped. */
class FlakyInformer {
  starts = 0;
  failNextStarts = 0;
  private readonly handlers = new Map<string, Array<(arg?: unknown) => void>>();
  on(verb: string, cb: (arg?: never) => void): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb as (arg?: unknown) => void]);
  }
  /** As the informer type keepRunning takes (the overloads of `on` do not admit a plain class). */
  asInformer(): Informer<KubernetesObject> & ObjectCache<KubernetesObject> {
    return this as unknown as Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  }
  off(): void {}
  emit(verb: string, arg?: unknown): void {
    for (const cb of this.handlers.get(verb) ?? []) cb(arg);
  }
  async start(): Promise<void> {
    this.starts++;
    if (this.failNextStarts > 0) {
      this.failNextStarts--;
      this.emit('error', new Error('connection refused'));
      return;
    }
    this.emit('connect');
  }
  async stop(): Promise<void> {}
  get(): KubernetesObject | undefined {
    return undefined;
  }
  list(): KubernetesObject[] {
    return [];
  }
}

describe('keepRunning', () => {
  it('restarts an informer after errors, with backoff, until it connects', async () => {
    const informer = new FlakyInformer();
    informer.failNextStarts = 3;
    const running = keepRunning('test', informer.asInformer(), () => () => {}, pino({ level: 'silent' }), {
      baseDelayMs: 5,
      maxDelayMs: 20,
    });
    await running.start();
    await tick(150);
    expect(informer.starts).toBe(4);
    // A watch that drops later is restarted too.
    informer.emit('error', new Error('watch closed'));
    await tick(50);
    expect(informer.starts).toBe(5);
    await running.stop();
    informer.emit('error', new Error('after stop'));
    await tick(50);
    expect(informer.starts).toBe(5);
  });

  it('passes added, updated and deleted objects on', async () => {
    const informer = new FlakyInformer();
    const seen: string[] = [];
    const running = keepRunning(
      'test',
      informer.asInformer(),
      (verb) => (obj) => seen.push(`${verb} ${obj.metadata?.name}`),
      pino({ level: 'silent' }),
    );
    informer.emit('add', { metadata: { name: 'a' } });
    informer.emit('update', { metadata: { name: 'a' } });
    informer.emit('delete', { metadata: { name: 'a' } });
    expect(seen).toEqual(['add a', 'update a', 'delete a']);
    await running.stop();
  });
});

describe('canAcquire', () => {
  const lease = (holder: string | undefined, renewedMsAgo: number, now: number): V1Lease => ({
    spec: {
      holderIdentity: holder,
      leaseDurationSeconds: 15,
      renewTime: new Date(now - renewedMsAgo).toISOString() as unknown as Date,
    },
  });
  const now = Date.parse('2024-05-01T12:00:00Z');

  it('takes a free, own or expired lease, and leaves a live one alone', () => {
    expect(canAcquire(undefined, 'me', now)).toBe(true);
    expect(canAcquire(lease(undefined, 0, now), 'me', now)).toBe(true);
    expect(canAcquire(lease('me', 1_000, now), 'me', now)).toBe(true);
    expect(canAcquire(lease('other', 1_000, now), 'me', now)).toBe(false);
    expect(canAcquire(lease('other', 16_000, now), 'me', now)).toBe(true);
  });
});

describe('parseGauge', () => {
  it('sums a gauge over its label sets and ignores other metrics', () => {
    const text = [
      '# HELP dynamo_storage_bytes Bytes stored',
      '# TYPE dynamo_storage_bytes gauge',
      'dynamo_storage_bytes{kind="objects"} 1000',
      'dynamo_storage_bytes{kind="hints"} 24',
      'dynamo_storage_bytes_total 5',
      'dynamo_storage_keys 7',
    ].join('\n');
    expect(parseGauge(text, 'dynamo_storage_bytes')).toBe(1024);
    expect(parseGauge(text, 'dynamo_missing')).toBeUndefined();
  });
});

describe('podViews', () => {
  it('reads ordinal, readiness and IP, and counts a terminating pod as not ready', () => {
    const pod = (name: string, ready: boolean, extra: Partial<V1Pod['metadata']> = {}): V1Pod => ({
      metadata: { name, ...extra },
      status: { podIP: '10.1.0.1', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
    });
    expect(
      podViews('demo', [
        pod('demo-1', true),
        pod('demo-0', false),
        pod('demo-2', true, { deletionTimestamp: new Date() }),
        pod('demo-x', true),
        pod('other-0', true),
      ]),
    ).toEqual([
      { ordinal: 0, ready: false, podIP: '10.1.0.1' },
      { ordinal: 1, ready: true, podIP: '10.1.0.1' },
      { ordinal: 2, ready: false, podIP: '10.1.0.1' },
    ]);
  });
});
