import { describe, expect, it } from 'vitest';
import { awaitQuorum } from '../../node/src/coordinator/quorum.js';
import { QuorumNotMetError } from '../../node/src/errors.js';

/** A promise settled from outside, to control exactly when each replica answers. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Resolves to 'pending' when p has not settled after pending microtasks and one macrotask. */
async function state(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  const tick = new Promise<'pending'>((r) => setTimeout(() => r('pending'), 0));
  return Promise.race([
    p.then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    ),
    tick,
  ]);
}

describe('awaitQuorum', () => {
  it('resolves as soon as `needed` calls succeed, without waiting for the slow ones', async () => {
    const a = deferred<string>();
    const b = deferred<string>();
    const slow = deferred<string>();
    const wait = awaitQuorum(
      'get',
      [
        ['a', a.promise],
        ['b', b.promise],
        ['c', slow.promise],
      ],
      2,
    );
    a.resolve('va');
    expect(await state(wait.quorum)).toBe('pending');
    b.resolve('vb');
    const replies = await wait.quorum;
    expect(replies.ok).toEqual([
      { peer: 'a', value: 'va' },
      { peer: 'b', value: 'vb' },
    ]);
    expect(replies.failed).toEqual([]);
    expect(await state(wait.settled)).toBe('pending');
    slow.resolve('vc');
  });

  it('resolves despite failures as long as enough calls succeed', async () => {
    const wait = awaitQuorum(
      'put',
      [
        ['a', Promise.reject(new Error('a down'))],
        ['b', Promise.resolve(1)],
        ['c', Promise.resolve(2)],
      ],
      2,
    );
    const replies = await wait.quorum;
    expect(replies.ok.map((r) => r.peer).sort()).toEqual(['b', 'c']);
    expect(replies.failed.map((f) => f.peer)).toEqual(['a']);
  });

  it('rejects with QuorumNotMetError {needed, got} when too many calls fail', async () => {
    const wait = awaitQuorum(
      'get',
      [
        ['a', Promise.resolve('va')],
        ['b', Promise.reject(new Error('b timed out'))],
        ['c', Promise.reject(new Error('c refused'))],
      ],
      2,
    );
    const err = await wait.quorum.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuorumNotMetError);
    const q = err as QuorumNotMetError;
    expect(q.op).toBe('get');
    expect(q.needed).toBe(2);
    expect(q.got).toBe(1);
    expect(q.details()).toEqual({ needed: 2, got: 1 });
    expect(q.reasons.sort()).toEqual(['b timed out', 'c refused']);
  });

  // By design (see QuorumWait.quorum) a lost quorum is reported only once the calls still in flight
  // finish, each bounded by its timeout, so that `got` counts every replica that did take a write.
  it('once the quorum is lost, rejects only after the calls in flight finish, counting their successes in got', async () => {
    const late = deferred<string>();
    const wait = awaitQuorum(
      'put',
      [
        ['a', Promise.reject(new Error('a down'))],
        ['b', Promise.reject(new Error('b down'))],
        ['c', late.promise],
      ],
      2,
    );
    expect(await state(wait.quorum)).toBe('pending');
    late.resolve('stored');
    const err = await wait.quorum.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuorumNotMetError);
    expect((err as QuorumNotMetError).got).toBe(1);
  });

  it('does not wait for calls that never answer once the quorum is met', async () => {
    const never = new Promise<string>(() => undefined);
    const wait = awaitQuorum(
      'get',
      [
        ['a', Promise.resolve('va')],
        ['b', never],
      ],
      1,
    );
    expect(await state(wait.quorum)).toBe('resolved');
  });

  it('resolves at once with no replies when 0 are needed', async () => {
    const never = new Promise<string>(() => undefined);
    const wait = awaitQuorum('put', [['a', never]], 0);
    expect(await state(wait.quorum)).toBe('resolved');
    expect(await wait.quorum).toEqual({ ok: [], failed: [] });
  });

  it('rejects at once with got 0 when there are no calls but replies are needed', async () => {
    const wait = awaitQuorum<string>('get', [], 1);
    expect(await state(wait.quorum)).toBe('rejected');
    const err = await wait.quorum.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuorumNotMetError);
    expect((err as QuorumNotMetError).needed).toBe(1);
    expect((err as QuorumNotMetError).got).toBe(0);
  });

  it('rejects when there are fewer calls than needed, even if all of them succeed', async () => {
    const wait = awaitQuorum(
      'put',
      [
        ['a', Promise.resolve(1)],
        ['b', Promise.resolve(2)],
      ],
      3,
    );
    const err = await wait.quorum.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuorumNotMetError);
    expect((err as QuorumNotMetError).needed).toBe(3);
    expect((err as QuorumNotMetError).got).toBe(2);
  });

  it('settled reports every success and failure after all calls finish, also after the quorum resolved', async () => {
    const slowFail = deferred<number>();
    const slowOk = deferred<number>();
    const wait = awaitQuorum(
      'get',
      [
        ['a', Promise.resolve(1)],
        ['b', slowFail.promise],
        ['c', slowOk.promise],
        ['d', Promise.reject(new Error('d refused'))],
      ],
      1,
    );
    await wait.quorum;
    expect(await state(wait.settled)).toBe('pending');
    slowFail.reject(new Error('b timed out'));
    slowOk.resolve(3);
    const all = await wait.settled;
    expect(all.ok.map((r) => [r.peer, r.value]).sort()).toEqual([
      ['a', 1],
      ['c', 3],
    ]);
    expect(all.failed.map((f) => [f.peer, f.error.message]).sort()).toEqual([
      ['b', 'b timed out'],
      ['d', 'd refused'],
    ]);
  });

  it('settled resolves even when the quorum was not met', async () => {
    const wait = awaitQuorum('put', [['a', Promise.reject(new Error('down'))]], 1);
    await expect(wait.quorum).rejects.toBeInstanceOf(QuorumNotMetError);
    const all = await wait.settled;
    expect(all.ok).toEqual([]);
    expect(all.failed.map((f) => f.peer)).toEqual(['a']);
  });

  it('the replies the quorum resolved with do not change when later calls answer', async () => {
    const late = deferred<string>();
    const wait = awaitQuorum(
      'get',
      [
        ['a', Promise.resolve('va')],
        ['b', late.promise],
      ],
      1,
    );
    const replies = await wait.quorum;
    late.resolve('vb');
    await wait.settled;
    expect(replies.ok).toEqual([{ peer: 'a', value: 'va' }]);
  });
});
