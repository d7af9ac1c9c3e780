/** Waiting for a quorum of replica replies out of several concurrent calls. */
import { QuorumNotMetError } from '../errors.js';

export interface Replies<T> {
  ok: Array<{ peer: string; value: T }>;
  failed: Array<{ peer: string; error: Error }>;
}

export interface QuorumWait<T> {
  /**
   * Resolves with the replies so far once `needed` calls succeeded. Once too many failed, rejects with
   * QuorumNotMetError after the calls still in flight finish (each is bounded by its timeout), so `got`
   * counts every replica that did take the request.
   */
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
    const done = replies.ok.length + replies.failed.length === calls.length;
    if (replies.ok.length >= needed) resolveQuorum(snapshot());
    else if (done) {
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
