// Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection: one replica of the operator
// reconciles, the others wait to take over when its lease runs out. Updates are conditional on resourceVersion.
import {
  ApiException,
  CoordinationV1Api,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  /** How often the leader renews, and others try to acquire. */
  retryPeriodMs?: number;
  /** The leader steps down when it has not renewed for this long (less than the lease duration). */
  renewDeadlineMs?: number;
}

/** Lease timestamps are MicroTime: RFC 3339 with exactly six fractional digits (the API server insists). */
const microTime = (date: Date): V1MicroTime => new V1MicroTime(date.getTime());

function toMillis(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/** Whether `identity` may take the lease at `now`: it is free, its own, or its holder let it expire. */
export function canAcquire(lease: V1Lease | undefined, identity: string, now: number): boolean {
  const spec = lease?.spec;
  if (!spec?.holderIdentity) return true;
  if (spec.holderIdentity === identity) return true;
  const renewed = toMillis(spec.renewTime) ?? toMillis(spec.acquireTime);
  const duration = (spec.leaseDurationSeconds ?? 15) * 1000;
  return renewed === undefined || renewed + duration < now;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly leaseDurationSeconds: number;
  private readonly retryPeriodMs: number;
  private readonly renewDeadlineMs: number;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;

  constructor(
    kubeConfig: KubeConfig,
    private readonly options: LeaderElectionOptions,
    private readonly callbacks: { onStartedLeading: () => void; onStoppedLeading: () => void },
    private readonly log: Logger,
  ) {
    this.api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.leaseDurationSeconds = options.leaseDurationSeconds ?? 15;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning; a leader releases the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.leading) {
      this.leading = false;
      await this.release().catch((err) => this.log.warn({ err: String(err) }, 'could not release lease'));
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      const ok = await this.tryAcquireOrRenew();
      const now = Date.now();
      if (ok) {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.log.info({ lease: this.options.name, identity: this.options.identity }, 'became leader');
          this.callbacks.onStartedLeading();
        }
      } else if (this.leading) {
        this.lose('another replica holds the lease');
      }
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lease update failed');
      if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs)
        this.lose('could not renew the lease in time');
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.tick(), this.retryPeriodMs);
      this.timer.unref?.();
    }
  }

  private lose(reason: string): void {
    this.leading = false;
    this.log.warn({ lease: this.options.name, reason }, 'lost leadership');
    this.callbacks.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = new Date();
    let lease: V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 404)) throw err;
    }
    if (lease === undefined) {
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: this.leaseDurationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (err) {
        if (err instanceof ApiException && err.code === 409) return false;
        throw err;
      }
    }
    if (!canAcquire(lease, identity, now.getTime())) return false;
    const spec = lease.spec ?? {};
    const takingOver = spec.holderIdentity !== identity;
    try {
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: this.leaseDurationSeconds,
            renewTime: microTime(now),
            acquireTime: takingOver ? microTime(now) : spec.acquireTime,
            leaseTransitions: (spec.leaseTransitions ?? 0) + (takingOver ? 1 : 0),
          },
        },
      });
      return true;
    } catch (err) {
      // Someone else wrote the lease since we read it (resourceVersion conflict): they win this round.
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
  }

  private async release(): Promise<void> {
    const { namespace, name, identity } = this.options;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    await this.api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        ...lease,
        spec: { ...lease.spec, holderIdentity: undefined, renewTime: undefined, acquireTime: undefined },
      },
    });
  }
}
