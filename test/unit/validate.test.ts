import { describe, expect, it } from 'vitest';
import {
  decodeSegment,
  MAX_KEY_BYTES,
  MAX_TIMEOUT_MS,
  parseQuorum,
  parseTimeout,
  validateBucket,
  validateKey,
} from '../../node/src/api/validate.js';
import { applyPropsUpdate, type BucketProps, MAX_N } from '../../node/src/buckets/props.js';
import { InvalidRequestError } from '../../node/src/errors.js';

/** Runs fn and returns the code of the InvalidRequestError it throws; fails the test otherwise. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).status).toBe(400);
    return (err as InvalidRequestError).code;
  }
  throw new Error('expected an InvalidRequestError, nothing was thrown');
}

describe('validateBucket', () => {
  it('accepts names of letters, digits, _ . - up to 255 characters', () => {
    for (const name of ['b', 'my-bucket_1.v2', 'ABC', '0', '.', 'x'.repeat(255)]) {
      expect(validateBucket(name)).toBe(name);
    }
  });

  it('rejects empty, too long, slash, unicode, space and NUL names with invalid_bucket', () => {
    for (const name of ['', 'x'.repeat(256), 'a/b', 'café', 'bücket', 'a b', 'a\u0000b', '\u0000']) {
      expect(
        codeOf(() => validateBucket(name)),
        JSON.stringify(name),
      ).toBe('invalid_bucket');
    }
  });
});

describe('validateKey', () => {
  it(`accepts keys of exactly ${MAX_KEY_BYTES} UTF-8 bytes, counting multi-byte characters by bytes`, () => {
    const keys = [
      'k'.repeat(1024),
      'é'.repeat(512), // 2 bytes each
      `${'€'.repeat(341)}a`, // 3 bytes each: 1023 + 1
      '😀'.repeat(256), // 4 bytes each
      'a/b?c#d%20 with spaces',
    ];
    for (const key of keys) expect(validateKey(key)).toBe(key);
  });

  it(`rejects keys of ${MAX_KEY_BYTES + 1} UTF-8 bytes even when they are fewer characters, and empty keys`, () => {
    const keys = [
      'k'.repeat(1025),
      `${'é'.repeat(512)}a`,
      `${'€'.repeat(341)}ab`,
      `${'😀'.repeat(256)}a`,
      'é'.repeat(513), // only 513 characters
      '',
    ];
    for (const key of keys)
      expect(
        codeOf(() => validateKey(key)),
        `${key.length} chars`,
      ).toBe('invalid_key');
  });

  it('rejects keys holding control characters', () => {
    for (const key of ['a\u0000b', 'line\nbreak', 'tab\there', '\u001f', 'del\u007f', '\r']) {
      expect(
        codeOf(() => validateKey(key)),
        JSON.stringify(key),
      ).toBe('invalid_key');
    }
  });

  it('rejects keys with lone surrogates, which are not valid UTF-8', () => {
    for (const key of ['\ud800', 'a\udc00b', '\ud83d', `x${'😀'.slice(0, 1)}`]) {
      expect(
        codeOf(() => validateKey(key)),
        JSON.stringify(key),
      ).toBe('invalid_key');
    }
  });
});

describe('decodeSegment', () => {
  it('decodes percent-encoded UTF-8', () => {
    expect(decodeSegment('a%2Fb', 'key')).toBe('a/b');
    expect(decodeSegment('caf%C3%A9', 'key')).toBe('café');
    expect(decodeSegment('plain', 'bucket')).toBe('plain');
  });

  it('throws invalid_key or invalid_bucket on malformed percent-encoding instead of crashing', () => {
    for (const segment of ['%', '%zz', 'a%2', '%E0%A4%A', '%FF', '%C3']) {
      expect(
        codeOf(() => decodeSegment(segment, 'key')),
        segment,
      ).toBe('invalid_key');
      expect(
        codeOf(() => decodeSegment(segment, 'bucket')),
        segment,
      ).toBe('invalid_bucket');
    }
  });
});

describe('parseQuorum', () => {
  it('accepts integers from 1 to n', () => {
    for (let n = 1; n <= 5; n++) {
      for (let v = 1; v <= n; v++) expect(parseQuorum('r', String(v), n, 1)).toBe(v);
    }
  });

  it('resolves one, quorum and all against n', () => {
    const expected: Record<number, number> = { 1: 1, 2: 2, 3: 2, 4: 3, 5: 3 };
    for (let n = 1; n <= 5; n++) {
      expect(parseQuorum('r', 'one', n, 1)).toBe(1);
      expect(parseQuorum('w', 'quorum', n, 1)).toBe(expected[n]);
      expect(parseQuorum('w', 'all', n, 1)).toBe(n);
    }
  });

  it('rejects 0, n+1, fractions, negatives and words with invalid_quorum', () => {
    for (let n = 1; n <= 5; n++) {
      for (const raw of ['0', String(n + 1), '2.5', '-1', 'abc', 'ALL', ' 1', '1e0']) {
        expect(
          codeOf(() => parseQuorum('r', raw, n, 1)),
          `n=${n} raw=${raw}`,
        ).toBe('invalid_quorum');
      }
    }
  });

  it('names the parameter in its error message', () => {
    expect(() => parseQuorum('w', 'abc', 3, 2)).toThrow(/^w /);
    expect(() => parseQuorum('r', '9', 3, 2)).toThrow(/r must be between 1 and n \(3\)/);
  });

  it('gives the fallback when absent, capped at n', () => {
    expect(parseQuorum('r', null, 3, 2)).toBe(2);
    expect(parseQuorum('r', '', 3, 2)).toBe(2);
    expect(parseQuorum('w', null, 1, 2)).toBe(1);
    expect(parseQuorum('w', null, 2, 3)).toBe(2);
  });
});

describe('parseTimeout', () => {
  it('accepts whole milliseconds from 1 to the maximum', () => {
    expect(parseTimeout('1', 5000)).toBe(1);
    expect(parseTimeout('250', 5000)).toBe(250);
    expect(parseTimeout(String(MAX_TIMEOUT_MS), 5000)).toBe(MAX_TIMEOUT_MS);
  });

  it('gives the fallback when absent', () => {
    expect(parseTimeout(null, 5000)).toBe(5000);
    expect(parseTimeout('', 5000)).toBe(5000);
  });

  it('rejects 0, over the maximum, fractions, negatives, exponents and words with invalid_timeout', () => {
    for (const raw of ['0', String(MAX_TIMEOUT_MS + 1), '1.5', '-5', '1e3', 'abc', 'Infinity']) {
      expect(
        codeOf(() => parseTimeout(raw, 5000)),
        raw,
      ).toBe('invalid_timeout');
    }
  });
});

describe('applyPropsUpdate', () => {
  const current: BucketProps = { n: 3, r: 2, w: 2, conflict: 'siblings', ttl: 0 };

  it('changes only the given fields and keeps the others', () => {
    expect(applyPropsUpdate(current, { r: 1 })).toEqual({ ...current, r: 1 });
    expect(applyPropsUpdate(current, { ttl: 60 })).toEqual({ ...current, ttl: 60 });
    expect(applyPropsUpdate(current, {})).toEqual(current);
  });

  it('does not modify the current props', () => {
    const before = { ...current };
    applyPropsUpdate(current, { n: 5, r: 3, w: 3, conflict: 'lww' });
    expect(current).toEqual(before);
  });

  it('accepts conflict lww and the largest n', () => {
    expect(applyPropsUpdate(current, { conflict: 'lww' }).conflict).toBe('lww');
    expect(applyPropsUpdate({ ...current, conflict: 'lww' }, { conflict: 'siblings' }).conflict).toBe(
      'siblings',
    );
    expect(applyPropsUpdate(current, { n: MAX_N, r: MAX_N, w: 1 })).toEqual({
      ...current,
      n: MAX_N,
      r: MAX_N,
      w: 1,
    });
  });

  it('accepts lowering n together with r and w in one update', () => {
    expect(applyPropsUpdate(current, { n: 1, r: 1, w: 1 })).toEqual({ ...current, n: 1, r: 1, w: 1 });
  });

  it('rejects invalid updates with invalid_props', () => {
    const invalid: Array<[string, unknown]> = [
      ['unknown field', { x: 1 }],
      ['unknown field next to valid ones', { r: 1, replicas: 3 }],
      ['r > n', { r: 4 }],
      ['w > n', { w: 4 }],
      ['n lowered below current r and w', { n: 1 }],
      ['n = 0', { n: 0 }],
      ['n = 17', { n: 17 }],
      ['r = 0', { r: 0 }],
      ['non-integer n', { n: 2.5 }],
      ['n as a string', { n: '3' }],
      ['n null', { n: null }],
      ['conflict x', { conflict: 'x' }],
      ['negative ttl', { ttl: -1 }],
      ['fractional ttl', { ttl: 1.5 }],
      ['string body', 'n=3'],
      ['number body', 5],
      ['null body', null],
      ['array body', [{ n: 3 }]],
      ['empty array body', []],
    ];
    for (const [what, input] of invalid) {
      expect(
        codeOf(() => applyPropsUpdate(current, input)),
        what,
      ).toBe('invalid_props');
    }
  });

  it('names the unknown field in its error message', () => {
    expect(() => applyPropsUpdate(current, { replicas: 3 })).toThrow(/"replicas"/);
  });
});
