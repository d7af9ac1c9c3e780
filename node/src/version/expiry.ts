/**
 * Time-to-live of values. The expiry is fixed when a value is written and travels with it, so every
 * replica reads the same value as expired at the same time; purging drops the bytes but keeps the
 * version's place in the clock, so a stale replica cannot bring the value back.
 */
import type { Clock, Entry, Sibling } from './dvvset.js';

/** True when the sibling is a value a read returns at time now: neither deleted nor expired. */
export function isLive(s: Sibling, now: number): boolean {
  return !s.deleted && (s.expiresAt === 0 || s.expiresAt > now);
}

const isExpired = (s: Sibling, now: number) => !s.deleted && s.expiresAt !== 0 && s.expiresAt <= now;

/** An expired value turned into a tombstone of the same version (value bytes dropped). */
const purged = (s: Sibling): Sibling => ({ ...s, value: Buffer.alloc(0), deleted: true });

/** The clock with every expired value purged; the same object when nothing expired. */
export function purgeExpired(c: Clock, now: number): Clock {
  const expired = (s: Sibling) => isExpired(s, now);
  if (!c.anonymous.some(expired) && !c.entries.some((e) => e.values.some(expired))) return c;
  const fix = (values: Sibling[]) => values.map((s) => (expired(s) ? purged(s) : s));
  return {
    entries: c.entries.map((e): Entry => ({ ...e, values: fix(e.values) })),
    anonymous: fix(c.anonymous),
  };
}
