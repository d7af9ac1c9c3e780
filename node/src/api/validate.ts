/** Validation of client input: bucket names, keys, quorum and timeout parameters. Pure. */
import { InvalidRequestError } from '../errors.js';

const BUCKET = /^[A-Za-z0-9_.-]{1,255}$/;
/** Keys are at most this many UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** Checks a bucket name: 1-255 characters of letters, digits, _ . - */
export function validateBucket(bucket: string): string {
  if (!BUCKET.test(bucket)) {
    throw new InvalidRequestError(
      'invalid_bucket',
      'bucket names are 1-255 characters of letters, digits, _ . -',
    );
  }
  return bucket;
}

/** Checks a (decoded) key: 1-1024 UTF-8 bytes, no NUL or other C0 control characters. */
export function validateKey(key: string): string {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes === 0 || bytes > MAX_KEY_BYTES) {
    throw new InvalidRequestError('invalid_key', `keys are 1-${MAX_KEY_BYTES} bytes of UTF-8`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(key))
    throw new InvalidRequestError('invalid_key', 'keys must not hold control characters');
  if (key.isWellFormed && !key.isWellFormed())
    throw new InvalidRequestError('invalid_key', 'keys must be valid UTF-8');
  return key;
}

/** Decodes one percent-encoded path segment; malformed encoding is a 400, not a crash. */
export function decodeSegment(segment: string, what: 'bucket' | 'key'): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidRequestError(`invalid_${what}`, `${what} is not valid percent-encoded UTF-8`);
  }
}

/** Resolves an r/w parameter (an integer or one|quorum|all) against n; undefined gives the fallback. */
export function parseQuorum(name: 'r' | 'w', raw: string | null, n: number, fallback: number): number {
  if (raw === null || raw === '') return Math.min(fallback, n);
  let v: number;
  if (raw === 'one') v = 1;
  else if (raw === 'quorum') v = Math.floor(n / 2) + 1;
  else if (raw === 'all') v = n;
  else if (/^\d+$/.test(raw)) v = Number(raw);
  else throw new InvalidRequestError('invalid_quorum', `${name} must be an integer or one, quorum, all`);
  if (v < 1 || v > n)
    throw new InvalidRequestError('invalid_quorum', `${name} must be between 1 and n (${n})`);
  return v;
}

/** Maximum per-request timeout, 10 minutes. */
export const MAX_TIMEOUT_MS = 600_000;

/** Parses ?timeout= in milliseconds; undefined gives the fallback. */
export function parseTimeout(raw: string | null, fallback: number): number {
  if (raw === null || raw === '') return fallback;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v < 1 || v > MAX_TIMEOUT_MS) {
    throw new InvalidRequestError(
      'invalid_timeout',
      `timeout must be milliseconds from 1 to ${MAX_TIMEOUT_MS}`,
    );
  }
  return v;
}

/** Parses ?ttl= (seconds, 0 = never expire); undefined gives the bucket's default. */
export function parseTtl(raw: string | null, fallback: number, max: number): number {
  if (raw === null || raw === '') return fallback;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v > max) {
    throw new InvalidRequestError('invalid_ttl', `ttl must be whole seconds from 0 (never expire) to ${max}`);
  }
  return v;
}

/** Parses a true/false query flag; absent is false. */
export function parseFlag(name: string, raw: string | null): boolean {
  if (raw === null || raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new InvalidRequestError(`invalid_${name}`, `${name} must be true or false`);
}

/** A Content-Type a value may be stored with: 1-255 printable ASCII characters or tabs. */
const CONTENT_TYPE = /^[\t\x20-\x7e]{1,255}$/;

/** The Content-Type of a write (application/octet-stream when absent); InvalidRequestError if unusable. */
export function parseContentType(raw: string | undefined): string {
  if (raw === undefined) return 'application/octet-stream';
  if (!CONTENT_TYPE.test(raw))
    throw new InvalidRequestError(
      'invalid_content_type',
      'Content-Type must be 1-255 printable ASCII characters',
    );
  return raw;
}
