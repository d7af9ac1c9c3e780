import { describe, expect, it } from 'vitest';
import { outcomeUnknown } from '../../node/src/errors.js';
import { checkReply, InvalidReplyError, REPLIES } from '../../node/src/protocol/replies.js';
import { REQUESTS } from '../../node/src/protocol/schema.js';
import { encodeObject } from '../../node/src/storage/codec.js';

const obj = (counter = 1, contentType = 'text/plain') =>
  encodeObject({
    entries: [
      {
        id: 'n1~a~0',
        counter,
        time: 1_700_000_000_000,
        values: [
          {
            value: Buffer.from('v'),
            contentType,
            lastModified: 1_700_000_000_000,
            deleted: false,
            expiresAt: 0,
          },
        ],
      },
    ],
    anonymous: [],
  });
const entry = (generation: number) => ({
  id: 'n2',
  address: '127.0.0.1:7000',
  tokens: ['0'.repeat(32)],
  status: 'up',
  generation,
  version: 1,
});
const stamped = (n: number, r: number, ts = Date.now()) => ({
  bucket: 'b',
  props: { n, r, w: 1, conflict: 'siblings', ttl: 0 },
  ts,
});

/** 'accepted', or the InvalidReplyError's message. */
function verdict(op: string, reply: unknown): string {
  try {
    checkReply('n2', op, reply);
    return 'accepted';
  } catch (err) {
    if (!(err instanceof InvalidReplyError)) throw err;
    return err.message;
  }
}

describe('peer reply validation', () => {
  it('has a reply schema for every request op', () => {
    expect(Object.keys(REPLIES).sort()).toEqual(Object.keys(REQUESTS).sort());
  });

  it('accepts the replies nodes send', () => {
    expect(verdict('get', { obj: obj() })).toBe('accepted');
    expect(verdict('get', { obj: null })).toBe('accepted');
    expect(verdict('put', { obj: obj() })).toBe('accepted');
    expect(verdict('merge', { ok: true })).toBe('accepted');
    expect(verdict('reap', { reaped: false })).toBe('accepted');
    expect(verdict('props.all', { props: [stamped(3, 2)] })).toBe('accepted');
    expect(verdict('info', { id: 'n2', http: 'http://x:1', keys: 3 })).toBe('accepted');
    expect(verdict('gossip.syn', { cluster: 'c', entries: [entry(1)], digest: [['n2', 1, 1]] })).toBe(
      'accepted',
    );
    expect(verdict('ae.keys', { keys: [['b\u0000k', Buffer.alloc(8)]] })).toBe('accepted');
    expect(verdict('stream.pull', { entries: [['b', 'k', obj()]], next: null, scanned: 1, total: 1 })).toBe(
      'accepted',
    );
  });

  it('refuses replies that would store or spread something broken, as an outcome unknown', () => {
    const refused: Array<[string, unknown]> = [
      ['get', { obj: Buffer.from('not msgpack') }],
      ['get', {}],
      ['put', { obj: obj(2 ** 53 - 1) }],
      ['put.hint', { obj: obj(1, 'a\r\nb') }],
      ['stream.pull', { entries: [['b', 'k', Buffer.from('x')]], next: null, scanned: 1, total: 1 }],
      ['stream.pull', { entries: [['b/x', 'k', obj()]], next: null, scanned: 1, total: 1 }],
      ['gossip.syn', { cluster: 'c', entries: [entry(2 ** 53 - 1)], digest: [] }],
      ['gossip.syn', { cluster: 'c', entries: [{ id: 'n2' }], digest: [] }],
      ['props.all', { props: [stamped(0, 1)] }],
      ['props.all', { props: [stamped(1, 3)] }],
      ['props.all', { props: [stamped(3, 2, 8e15)] }],
      ['ae.keys', { keys: [['no-separator', Buffer.alloc(8)]] }],
      ['ae.root', { root: 'not bytes' }],
      ['info', { id: '', http: 'x' }],
      ['unknown.op', { ok: true }],
    ];
    for (const [op, reply] of refused)
      expect(verdict(op, reply), `${op} ${JSON.stringify(reply)}`).not.toBe('accepted');
    let caught: unknown;
    try {
      checkReply('n2', 'put', { obj: Buffer.from('x') });
    } catch (err) {
      caught = err;
    }
    // The peer may have applied the write: the coordinator must not retry it elsewhere.
    expect(outcomeUnknown(caught)).toBe(true);
  });
});
