/**
 * The opaque causal context handed to clients: a version vector in a small binary layout,
 * authenticated and base64url-encoded so it fits in a URL or an HTTP header.
 *
 * Layout: [u8 format = 2][varint count][count x (varint id length, id UTF-8, varint counter)][16-byte MAC]
 * where varints are unsigned LEB128 and the MAC is the first 16 bytes of HMAC-SHA256, under the
 * cluster's context secret, of the bucket, the key and what precedes it. A context is thus good only for
 * the key it was read from, and only a node holding the secret can make one: a forged context, or one
 * of another key (which would supersede siblings the writer never read), is refused.
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidContextError } from '../errors.js';
import { MAX_COUNTER, type VersionVector } from './dvvset.js';

/** What a context is bound to: the cluster's secret and the object it was read from. */
export interface ContextBinding {
  secret: Buffer;
  bucket: string;
  key: string;
}

/** A context secret derived from a name (the cluster's), for clusters configured without one. */
export const derivedContextSecret = (name: string): Buffer =>
  createHash('sha256').update(`dynamo-kv context secret|${name}`).digest();

const FORMAT_VERSION = 2;
const MAC_BYTES = 16;
const MAX_ENTRIES = 10_000;
const MAX_ID_BYTES = 255;
const MAX_INPUT_CHARS = 1024 * 1024;
const MAX_VARINT = 2 ** 53;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

// fatal: malformed UTF-8 must be rejected rather than replaced; ignoreBOM: a leading U+FEFF is part of the id.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function mac(payload: Buffer, b: ContextBinding): Buffer {
  return createHmac('sha256', b.secret)
    .update(`${b.bucket}\u0000${b.key}\u0000`)
    .update(payload)
    .digest()
    .subarray(0, MAC_BYTES);
}

function writeVarint(out: number[], n: number): void {
  // Division, not >>>, because counters go beyond 32 bits.
  let rest = n;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

/** Encode a version vector as an opaque, authenticated, URL/header-safe string (base64url) for one key. */
export function encodeContext(vv: VersionVector, binding: ContextBinding): string {
  const sorted = [...vv].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  if (sorted.length > MAX_ENTRIES) throw new RangeError(`context: more than ${MAX_ENTRIES} entries`);
  const out: number[] = [FORMAT_VERSION];
  writeVarint(out, sorted.length);
  sorted.forEach(([id, counter], i) => {
    // A programming error, not bad client input: these would produce a context decode rejects.
    const idBytes = Buffer.from(id, 'utf8');
    if (id === sorted[i - 1]?.[0]) throw new RangeError(`context: duplicate id ${JSON.stringify(id)}`);
    if (idBytes.length === 0 || idBytes.length > MAX_ID_BYTES || idBytes.toString('utf8') !== id) {
      throw new RangeError(`context: id ${JSON.stringify(id)} is empty, too long or not well-formed`);
    }
    if (!Number.isSafeInteger(counter) || counter < 1 || counter > MAX_COUNTER) {
      throw new RangeError(`context: counter ${counter} of ${JSON.stringify(id)} is out of range`);
    }
    writeVarint(out, idBytes.length);
    out.push(...idBytes);
    writeVarint(out, counter);
  });
  const payload = Buffer.from(out);
  return Buffer.concat([payload, mac(payload, binding)]).toString('base64url');
}

class Reader {
  private pos = 0;
  constructor(private readonly bytes: Buffer) {}

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  byte(): number {
    const b = this.bytes[this.pos];
    if (b === undefined) throw new InvalidContextError('context is truncated');
    this.pos++;
    return b;
  }

  take(n: number): Buffer {
    if (n > this.remaining) throw new InvalidContextError('context is truncated');
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if (value > MAX_VARINT) throw new InvalidContextError('context varint exceeds 2^53');
      if ((b & 0x80) === 0) {
        // Only the shortest encoding is accepted, so each vector has exactly one context.
        if (b === 0 && scale > 1) throw new InvalidContextError('context varint is not minimal');
        return value;
      }
      // 8 groups of 7 bits already cover 2^53; a longer varint is malformed, not merely large.
      if (scale === 0x80 ** 7) throw new InvalidContextError('context varint is too long');
      scale *= 0x80;
    }
  }
}

function parse(s: string, binding: ContextBinding | undefined): VersionVector {
  if (typeof s !== 'string') throw new InvalidContextError('context must be a string');
  if (s.length > MAX_INPUT_CHARS) throw new InvalidContextError('context is longer than 1 MiB');
  if (!BASE64URL.test(s)) throw new InvalidContextError('context is not base64url');
  const bytes = Buffer.from(s, 'base64url');
  // Node's decoder ignores stray trailing bits; requiring the canonical spelling means no two
  // strings decode to the same context, so any edited character is caught by the MAC.
  if (bytes.toString('base64url') !== s) throw new InvalidContextError('context is not canonical base64url');
  if (bytes.length < 2 + MAC_BYTES) throw new InvalidContextError('context is truncated');
  const payload = bytes.subarray(0, bytes.length - MAC_BYTES);
  if (binding && !timingSafeEqual(mac(payload, binding), bytes.subarray(payload.length))) {
    throw new InvalidContextError('context was not issued for this key by this cluster');
  }
  const reader = new Reader(payload);
  const format = reader.byte();
  if (format !== FORMAT_VERSION) throw new InvalidContextError(`unknown context format ${format}`);
  const count = reader.varint();
  if (count > MAX_ENTRIES) throw new InvalidContextError(`context has more than ${MAX_ENTRIES} entries`);
  const vv: VersionVector = [];
  let previous: string | undefined;
  for (let i = 0; i < count; i++) {
    const idLength = reader.varint();
    if (idLength === 0 || idLength > MAX_ID_BYTES) {
      throw new InvalidContextError(`context id length ${idLength} is out of range`);
    }
    const id = utf8.decode(reader.take(idLength));
    if (previous !== undefined && !(previous < id)) {
      throw new InvalidContextError('context ids are not sorted or not unique');
    }
    const counter = reader.varint();
    if (counter === 0 || !Number.isSafeInteger(counter) || counter > MAX_COUNTER) {
      throw new InvalidContextError(`context counter ${counter} is out of range`);
    }
    vv.push([id, counter]);
    previous = id;
  }
  if (reader.remaining > 0) throw new InvalidContextError('context has trailing bytes');
  return vv;
}

/**
 * Decode a context, checking its MAC against binding. Throws InvalidContextError
 * (from ../errors.js) on anything malformed: bad base64url, wrong format version, truncation, trailing
 * bytes, a MAC of another key or another secret, unsorted/duplicate ids, counter 0 or above MAX_COUNTER,
 * id empty or > 255 bytes, more than 10_000 entries, input longer than 1 MiB. Never throws anything else.
 */
export function decodeContext(s: string, binding: ContextBinding): VersionVector {
  return decode(s, binding);
}

/** The version vector of a context, its MAC unchecked: for tools and tests, never to accept a write. */
export function inspectContext(s: string): VersionVector {
  return decode(s, undefined);
}

function decode(s: string, binding: ContextBinding | undefined): VersionVector {
  try {
    return parse(s, binding);
  } catch (err) {
    if (err instanceof InvalidContextError) throw err;
    // e.g. the TextDecoder's TypeError on malformed UTF-8: callers only ever see one error type.
    throw new InvalidContextError(
      `context is malformed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
