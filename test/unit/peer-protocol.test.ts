import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../node/src/errors.js';
import { parseRequest } from '../../node/src/protocol/router.js';
import { REQUESTS } from '../../node/src/protocol/schema.js';
import { encodeObject } from '../../node/src/storage/codec.js';
import { type Clock, MAX_COUNTER, type Sibling } from '../../node/src/version/index.js';

const sib = (over: Partial<Sibling> = {}): Sibling => ({
  value: Buffer.from('v'),
  contentType: 'text/plain',
  lastModified: 1_700_000_000_000,
  deleted: false,
  expiresAt: 0,
  ...over,
});
const clock = (s: Sibling = sib(), counter = 1): Clock => ({
  entries: [{ id: 'n1~abc~0', counter, time: 1_700_000_000_000, values: [s] }],
  anonymous: [],
});
const props = (over: Record<string, unknown> = {}, ts = Date.now()) => ({
  op: 'props.set',
  props: { bucket: 'b', props: { n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0, ...over }, ts },
});

/** The error code parseRequest refuses body with, or 'accepted'. */
function verdict(body: unknown): string {
  try {
    parseRequest(body);
    return 'accepted';
  } catch (err) {
    if (!(err instanceof InvalidRequestError)) throw err;
    return err.code;
  }
}

describe('peer protocol validation', () => {
  it('accepts the requests the nodes send', () => {
    expect(verdict({ op: 'get', b: 'b', k: 'k', rid: 'r1' })).toBe('accepted');
    expect(verdict({ op: 'put', b: 'b', k: 'k', ctx: [['n1~a~0', 3]], sib: sib(), lww: false })).toBe(
      'accepted',
    );
    expect(verdict({ op: 'merge', b: 'b', k: 'k', obj: encodeObject(clock()), lww: false })).toBe('accepted');
    expect(verdict(props())).toBe('accepted');
    const tombstone = clock(sib({ value: Buffer.alloc(0), contentType: '', deleted: true }));
    expect(verdict({ op: 'reap', b: 'b', k: 'k', obj: encodeObject(tombstone) })).toBe('accepted');
    expect(verdict({ op: 'gossip.syn', cluster: 'c', digest: [['n1', 1, 2]] })).toBe('accepted');
    expect(verdict({ op: 'stream.push', entries: [['b', 'k', encodeObject(clock())]] })).toBe('accepted');
    expect(verdict({ op: 'info' })).toBe('accepted');
  });

  it('refuses each payload that once bricked a node or a key', () => {
    // props n=0 (no node holding the bucket could restart), r > n, a stamp far in the future
    expect(verdict(props({ n: 0 }))).toBe('invalid_message');
    expect(verdict(props({ n: 2, r: 3 }))).toBe('invalid_message');
    expect(verdict(props({}, Date.now() + 365 * 86_400_000))).toBe('invalid_message');
    // an empty sibling, an expiry past the JS date range, a content type with CR/LF
    const put = (s: unknown) => ({ op: 'put', b: 'b', k: 'k', ctx: [], sib: s, lww: false });
    expect(verdict(put({}))).toBe('invalid_message');
    expect(verdict(put(sib({ expiresAt: 9e15 })))).toBe('invalid_message');
    expect(verdict(put(sib({ contentType: 'text/plain\r\nX-Evil: 1' })))).toBe('invalid_message');
    // the same inside an encoded object, and a counter that would overflow
    const merge = (c: Clock) => ({ op: 'merge', b: 'b', k: 'k', obj: encodeObject(c), lww: false });
    expect(verdict(merge(clock(sib({ contentType: 'a\nb' }))))).toBe('invalid_message');
    expect(verdict(merge(clock(sib({ lastModified: -1 }))))).toBe('invalid_message');
    expect(verdict(merge(clock(sib(), MAX_COUNTER + 1)))).toBe('invalid_message');
    expect(
      verdict(merge({ entries: [{ id: 'a', counter: 1, time: 0, values: [sib(), sib()] }], anonymous: [] })),
    ).toBe('invalid_message');
    expect(verdict({ op: 'merge', b: 'b', k: 'k', obj: Buffer.from([1, 2, 3]), lww: false })).toBe(
      'invalid_message',
    );
    expect(verdict({ op: 'put', b: 'b', k: 'k', ctx: [['a', 2 ** 53 - 1]], sib: sib(), lww: false })).toBe(
      'invalid_message',
    );
    // a gossip generation far in the future (it removed a live member from every ring for good)
    const entry = { id: 'n1', address: 'h:1', tokens: [], status: 'up', version: 1 };
    expect(
      verdict({ op: 'gossip.push', cluster: 'c', entries: [{ ...entry, generation: 2 ** 53 - 1 }] }),
    ).toBe('invalid_message');
    expect(
      verdict({ op: 'gossip.push', cluster: 'c', entries: [{ ...entry, generation: Date.now() }] }),
    ).toBe('accepted');
    // bad names, keys and ops
    expect(verdict({ op: 'get', b: 'a/b', k: 'k' })).toBe('invalid_message');
    expect(verdict({ op: 'get', b: 'b', k: 'é'.repeat(600) })).toBe('invalid_message');
    expect(verdict({ op: 'get', b: 'b', k: 'a\u0000b' })).toBe('invalid_message');
    expect(verdict({ op: 'drop.everything' })).toBe('unknown_op');
    expect(verdict({ op: 'constructor' })).toBe('unknown_op');
    expect(verdict(null)).toBe('unknown_op');
    expect(verdict([1, 2])).toBe('unknown_op');
  });

  it('answers anything at all with acceptance or a typed refusal, never another error', () => {
    const ops = [...Object.keys(REQUESTS), 'nope'];
    // Every field name some op's schema knows: on another op it is unknown.
    const FIELDS = [...new Set(Object.values(REQUESTS).flatMap((s) => Object.keys(s.properties)))];
    fc.assert(
      fc.property(
        fc.constantFrom(...ops),
        fc.dictionary(fc.constantFrom(...FIELDS, 'x'), fc.anything()),
        (op, rest) => {
          expect(['accepted', 'invalid_message', 'unknown_op']).toContain(verdict({ ...rest, op }));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
