/**
 * On-disk and on-wire encoding of a stored object (a dvvset clock with its sibling values).
 * A leading format byte lets later versions change the layout without rewriting old data.
 */
import { Packr } from 'msgpackr';
import type { Clock, Entry, Sibling } from '../version/dvvset.js';

const FORMAT = 1;
// Plain msgpack maps/arrays (no record extension), so stored bytes never depend on process-local state.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** value, content type, last modified, deleted, expires at (absent in objects written before TTL existed). */
type WireSibling = [Buffer, string, number, 0 | 1, number?];
type WireEntry = [string, number, number, WireSibling[]];

const toWire = (s: Sibling): WireSibling => [
  s.value,
  s.contentType,
  s.lastModified,
  s.deleted ? 1 : 0,
  s.expiresAt,
];
const fromWire = (w: WireSibling): Sibling => ({
  value: Buffer.isBuffer(w[0]) ? w[0] : Buffer.from(w[0]),
  contentType: w[1],
  lastModified: w[2],
  deleted: w[3] === 1,
  expiresAt: w[4] ?? 0,
});

/** Encodes a clock for storage or transfer. */
export function encodeObject(c: Clock): Buffer {
  const entries: WireEntry[] = c.entries.map((e) => [e.id, e.counter, e.time, e.values.map(toWire)]);
  return packr.pack([FORMAT, entries, c.anonymous.map(toWire)]);
}

/** Decodes what encodeObject produced; throws on unknown formats (corruption must not pass silently). */
export function decodeObject(bytes: Uint8Array): Clock {
  const [format, entries, anonymous] = packr.unpack(bytes) as [number, WireEntry[], WireSibling[]];
  if (format !== FORMAT) throw new Error(`unknown object format ${format}`);
  return {
    entries: entries.map(
      ([id, counter, time, values]): Entry => ({ id, counter, time, values: values.map(fromWire) }),
    ),
    anonymous: anonymous.map(fromWire),
  };
}

/** Bytes of a stored object's values, for size accounting. */
export function valueBytes(c: Clock): number {
  let n = 0;
  for (const s of c.anonymous) n += s.value.length;
  for (const e of c.entries) for (const s of e.values) n += s.value.length;
  return n;
}
