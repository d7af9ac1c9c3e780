/** Waiting for a quorum of replica replies out of several concurrent calls. */
import { QuorumNotMetError } from '../errors.js';

export interface Replies<T> {
  ok: Array<{ peer: string; value: T }>;
  failed: Array<{ peer: string; error: Error }>;
}

export interface QuorumWait<T> {
  /** Resolves with the replies so far once `needed` calls succeeded; rejects with QuorumNotMetError as soon as too many failed. */
  quorum: Promise<Replies<T>>;
  /** Resolves with every reply and failure once all calls have finished. */
  settled: Promise<Replies<T>>;
}

/** Tracks calls to replicas and settles as soon as the outcome of the quorum is known. */
export function awaitQuorum<T>(
  op: string,
  calls: Array<[string, Promise<T>]>,
  needed: number,
): QuorumWait<T> {
  const replies: Replies<T> = { ok: [], failed: [] };
  let resolveQuorum!: (r: Replies<T>) => void;
  let rejectQuorum!: (e: Error) => void;
  const quorum = new Promise<Replies<T>>((res, rej) => {
    resolveQuorum = res;
    rejectQuorum = rej;
  });
  quorum.catch(() => undefined); // callers may only look at `settled`
  const snapshot = () => ({ ok: [...replies.ok], failed: [...replies.failed] });
  const check = () => {
    if (replies.ok.length >= needed) resolveQuorum(snapshot());
    else if (calls.length - replies.failed.length < needed) {
      const reasons = replies.failed.map((f) => f.error.message);
      rejectQuorum(new QuorumNotMetError(op, needed, replies.ok.length, reasons));
    }
  };
  check();
  const settled = Promise.all(
    calls.map(([peer, p]) =>
      p.then(
        (value) => {
          replies.ok.push({ peer, value });
          check();
        },
        (error: Error) => {
          replies.failed.push({ peer, error });
          check();
        },
      ),
    ),
  ).then(snapshot);
  return { quorum, settled };
}
