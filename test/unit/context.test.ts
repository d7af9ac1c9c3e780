import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidContextError } from '../../node/src/errors.js';
import {
  type ContextBinding,
  decodeContext as decodeBound,
  encodeContext as encodeBound,
  MAX_COUNTER,
  type VersionVector,
} from '../../node/src/version/index.js';

/** Every context here is for key b/k under this secret, unless a test says otherwise. */
const B: ContextBinding = { secret: Buffer.from('0123456789abcdef0123456789abcdef'), bucket: 'b', key: 'k' };
const encodeContext = (vv: VersionVector) => encodeBound(vv, B);
const decodeContext = (s: string) => decodeBound(s, B);

/** Decode, returning the InvalidContextError instead of throwing it; any other error fails the test. */
function decodeOrError(s: string): VersionVector | InvalidContextError {
  try {
    return decodeContext(s);
  } catch (err) {
    if (err instanceof InvalidContextError) return err;
    throw err;
  }
}

function expectInvalid(s: string): InvalidContextError {
  const out = decodeOrError(s);
  expect(out).toBeInstanceOf(InvalidContextError);
  return out as InvalidContextError;
}

/** A context string around hand-made payload bytes, with a correct MAC for B. */
function frame(payload: number[] | Buffer): string {
  const bytes = Buffer.from(payload);
  const mac = createHmac('sha256', B.secret).update(`${B.bucket}\u0000${B.key}\u0000`).update(bytes).digest();
  return Buffer.concat([bytes, mac.subarray(0, 16)]).toString('base64url');
}

const idArb = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 40 })
  .filter((id) => Buffer.byteLength(id) <= 255);
const counterArb = fc.oneof(
  fc.integer({ min: 1, max: 1000 }),
  fc.integer({ min: 1, max: MAX_COUNTER }),
  fc.constantFrom(1, 127, 128, 16_383, 16_384, 2 ** 32, MAX_COUNTER),
);
/** Valid version vectors, sorted by id as join() returns them. */
const vvArb: fc.Arbitrary<VersionVector> = fc
  .uniqueArray(fc.tuple(idArb, counterArb), { selector: ([id]) => id, maxLength: 12 })
  .map((vv) => vv.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

const BASE64URL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('context codec', () => {
  it('round-trips arbitrary version vectors', () => {
    fc.assert(
      fc.property(vvArb, (vv) => {
        const s = encodeContext(vv);
        expect(s).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(decodeContext(s)).toEqual(vv);
      }),
    );
  });

  it('encodes the same vector to the same string whatever its order', () => {
    fc.assert(
      fc.property(vvArb, (vv) => {
        expect(encodeContext([...vv].reverse())).toBe(encodeContext(vv));
      }),
    );
  });

  it('round-trips the empty vector, a 255-byte id, a leading byte order mark and 10 000 entries', () => {
    expect(decodeContext(encodeContext([]))).toEqual([]);
    const long: VersionVector = [[`${'é'.repeat(127)}x`, MAX_COUNTER]];
    expect(decodeContext(encodeContext(long))).toEqual(long);
    const bom: VersionVector = [['\ufeffnode', 3]];
    expect(decodeContext(encodeContext(bom))).toEqual(bom);
    const many: VersionVector = Array.from({ length: 10_000 }, (_, i) => [
      `n${String(i).padStart(5, '0')}`,
      i + 1,
    ]);
    expect(decodeContext(encodeContext(many))).toEqual(many);
  });

  it('rejects any single changed character of an encoded context', () => {
    fc.assert(
      fc.property(
        vvArb,
        fc.nat(),
        fc.constantFrom(...BASE64URL_CHARS, '=', '+', '/', ' ', '.', 'é'),
        (vv, i, ch) => {
          const s = encodeContext(vv);
          const at = i % s.length;
          fc.pre(s[at] !== ch);
          expectInvalid(s.slice(0, at) + ch + s.slice(at + 1));
        },
      ),
    );
  });

  it('rejects any single changed byte of the binary form', () => {
    fc.assert(
      fc.property(vvArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (vv, i, flip) => {
        const bytes = Buffer.from(encodeContext(vv), 'base64url');
        bytes[i % bytes.length]! ^= flip;
        expectInvalid(bytes.toString('base64url'));
      }),
    );
  });

  it('rejects every truncation and every extension of an encoded context', () => {
    fc.assert(
      fc.property(
        vvArb,
        fc.nat(),
        fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 8 }),
        (vv, n, tail) => {
          const s = encodeContext(vv);
          expectInvalid(s.slice(0, n % s.length));
          expectInvalid(s + tail);
          const bytes = Buffer.from(s, 'base64url');
          expectInvalid(bytes.subarray(0, n % bytes.length).toString('base64url'));
        },
      ),
    );
  });

  it('never throws anything but InvalidContextError on arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.base64String(),
          fc.stringMatching(/^[A-Za-z0-9_-]*$/),
        ),
        (s) => {
          decodeOrError(s);
        },
      ),
    );
  });

  it('parses arbitrary authenticated payloads into canonical contexts or rejects them', () => {
    // Whoever holds the secret (every node) can make any payload: the parser must hold up on its own.
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc
            .tuple(fc.uint8Array({ maxLength: 3 }), fc.uint8Array({ maxLength: 60 }))
            .map(([head, rest]) => Uint8Array.from([2, ...head, ...rest])),
        ),
        (payload) => {
          const s = frame(Buffer.from(payload));
          const out = decodeOrError(s);
          if (!(out instanceof InvalidContextError)) expect(encodeContext(out)).toBe(s);
        },
      ),
    );
  });

  it('rejects each kind of malformed payload even with a valid MAC', () => {
    const utf8 = (s: string) => [...Buffer.from(s)];
    const ok = frame([2, 1, 1, ...utf8('a'), 5]);
    expect(decodeContext(ok)).toEqual([['a', 5]]);
    const bad: Record<string, string> = {
      empty: '',
      'not base64url': `${ok.slice(0, -1)}+`,
      padded: `${ok}==`,
      'too short': frame([2]),
      'format version 1': frame([1, 1, 1, ...utf8('a'), 5]),
      'format version 0': frame([0, 0]),
      'count larger than entries': frame([2, 2, 1, ...utf8('a'), 5]),
      'trailing bytes': frame([2, 1, 1, ...utf8('a'), 5, 0]),
      'unsorted ids': frame([2, 2, 1, ...utf8('b'), 1, 1, ...utf8('a'), 1]),
      'duplicate ids': frame([2, 2, 1, ...utf8('a'), 1, 1, ...utf8('a'), 2]),
      'counter 0': frame([2, 1, 1, ...utf8('a'), 0]),
      // 2^53 = 0x20000000000000: not a safe integer.
      'counter 2^53': frame([2, 1, 1, ...utf8('a'), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]),
      'varint above 2^53': frame([2, 1, 1, ...utf8('a'), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      'varint of 9 bytes': frame([
        1,
        1,
        1,
        ...utf8('a'),
        0x81,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x80,
        0x00,
      ]),
      // Enough continuation bytes overflow a float to Infinity (and 0 * Infinity to NaN).
      'count varint of 150 bytes': frame([2, ...Array(149).fill(0x80), 0x01]),
      'varint running off the end': frame([2, 1, 1, ...utf8('a'), 0x80]),
      'non-minimal varint': frame([2, 1, 1, ...utf8('a'), 0x85, 0x00]),
      'empty id': frame([2, 1, 0, 5]),
      'id of 256 bytes': frame([2, 1, 0x80, 0x02, ...Array(256).fill(0x61), 5]),
      'id longer than the payload': frame([2, 1, 9, ...utf8('a'), 5]),
      'invalid UTF-8 id': frame([2, 1, 2, 0xc3, 0x28, 5]),
      'lone surrogate id': frame([2, 1, 3, 0xed, 0xa0, 0x80, 5]),
      'more than 10 000 entries': frame([2, 0x91, 0x4e]),
      'longer than 1 MiB': 'A'.repeat(1024 * 1024 + 4),
    };
    for (const [what, s] of Object.entries(bad)) {
      const err = decodeOrError(s);
      expect(err, what).toBeInstanceOf(InvalidContextError);
      expect((err as InvalidContextError).code).toBe('invalid_context');
      expect((err as InvalidContextError).status).toBe(400);
    }
  });

  it('rejects non-canonical base64url spellings of a valid context', () => {
    // "QQ" and "QR" both decode to the byte 0x41 with Node's lenient decoder. 22 bytes: the last
    // character carries 4 unused bits.
    const s = encodeContext([['ab', 1]]);
    expect(Buffer.from(s, 'base64url').length % 3).not.toBe(0);
    const last = s[s.length - 1]!;
    const sibling = BASE64URL_CHARS[BASE64URL_CHARS.indexOf(last) ^ 1]!;
    expect(Buffer.from(s.slice(0, -1) + sibling, 'base64url')).toEqual(Buffer.from(s, 'base64url'));
    expectInvalid(s.slice(0, -1) + sibling);
  });

  it('refuses to encode vectors that would not decode', () => {
    expect(() => encodeContext([['', 1]])).toThrow(RangeError);
    expect(() => encodeContext([['a', 0]])).toThrow(RangeError);
    expect(() => encodeContext([['a', 1.5]])).toThrow(RangeError);
    expect(() => encodeContext([['x'.repeat(256), 1]])).toThrow(RangeError);
    expect(() =>
      encodeContext([
        ['a', 1],
        ['a', 2],
      ]),
    ).toThrow(RangeError);
    expect(() => encodeContext([['\ud800', 1]])).toThrow(RangeError);
  });

  it('accepts a context only for the key it was issued for, under the cluster secret', () => {
    const vv: VersionVector = [['n1~abc~0', 7]];
    const s = encodeContext(vv);
    expect(decodeBound(s, B)).toEqual(vv);
    for (const other of [
      { ...B, key: 'k2' },
      { ...B, bucket: 'b2' },
      // bucket and key are separated: "b" + "k" never passes for "bk" + "" or "b\0k"
      { ...B, bucket: 'bk', key: '' },
      { ...B, secret: Buffer.from('another secret of the same length!') },
    ]) {
      expect(() => decodeBound(s, other)).toThrow(InvalidContextError);
    }
  });

  it('refuses a counter above 2^48 even under a valid MAC (a key must never be bricked)', () => {
    // 2^48 + 1 as a minimal LEB128 varint.
    const bytes: number[] = [];
    let rest = MAX_COUNTER + 1;
    while (rest >= 0x80) {
      bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    bytes.push(rest);
    expectInvalid(frame([2, 1, 1, 0x61, ...bytes]));
    expect(decodeContext(encodeContext([['a', MAX_COUNTER]]))).toEqual([['a', MAX_COUNTER]]);
  });
});
