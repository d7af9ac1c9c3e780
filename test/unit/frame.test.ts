import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameKind,
  MAX_FRAME_BYTES,
} from '../../node/src/transport/frame.js';

const wire = (...frames: Frame[]): Buffer =>
  Buffer.concat(frames.flatMap((f) => encodeFrame(f.kind, f.id, f.payload)));

/** Feeds the chunks to a fresh decoder and returns every frame it produced. */
const decodeChunks = (chunks: Buffer[]): Frame[] => {
  const decoder = new FrameDecoder();
  return chunks.flatMap((chunk) => decoder.push(chunk));
};

const sample: Frame[] = [
  { kind: FrameKind.Hello, id: 0, payload: { cluster: 'c1', node: 'n1' } },
  { kind: FrameKind.Request, id: 1, payload: { op: 'get', b: 'bkt', k: 'key', n: [1, 2, 3] } },
  { kind: FrameKind.Reply, id: 1, payload: null },
  { kind: FrameKind.ErrorReply, id: 0xffffffff, payload: { code: 'internal', message: 'boom' } },
  { kind: FrameKind.Request, id: 42, payload: { value: Buffer.from([0, 1, 2, 253, 254, 255]) } },
];

describe('FrameDecoder', () => {
  it('decodes a frame split at every possible byte boundary into the frame that was sent', () => {
    for (const frame of sample) {
      const bytes = wire(frame);
      for (let cut = 0; cut <= bytes.length; cut++) {
        expect(decodeChunks([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual([frame]);
      }
    }
  });

  it('decodes a stream of several frames split at every boundary, in order', () => {
    const bytes = wire(...sample);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(decodeChunks([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(sample);
    }
  });

  it('decodes a stream delivered one byte at a time', () => {
    const bytes = wire(...sample);
    const chunks = [...bytes].map((b) => Buffer.from([b]));
    expect(decodeChunks(chunks)).toEqual(sample);
  });

  it('decodes a stream cut into many chunks at random places', () => {
    const bytes = wire(...sample, ...sample);
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      let at = 0;
      while (at < bytes.length) {
        const size = Math.floor(random() * 40);
        chunks.push(bytes.subarray(at, at + size));
        at += size;
      }
      expect(decodeChunks(chunks)).toEqual([...sample, ...sample]);
    }
  });

  it('returns every frame when several complete frames arrive in one chunk', () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(wire(...sample))).toEqual(sample);
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
  });

  it('returns the complete frames of a chunk and keeps the trailing partial frame for later', () => {
    const bytes = wire(sample[0]!, sample[1]!);
    const firstLength = wire(sample[0]!).length;
    const decoder = new FrameDecoder();
    expect(decoder.push(bytes.subarray(0, firstLength + 3))).toEqual([sample[0]]);
    expect(decoder.push(bytes.subarray(firstLength + 3))).toEqual([sample[1]]);
  });

  it('delivers Buffers in payloads byte-exact and as Buffers', () => {
    const value = Buffer.from([0, 0xff, 0x80, 0x7f, 0x00, 0xc1]);
    const [frame] = decodeChunks([wire({ kind: FrameKind.Reply, id: 5, payload: { value } })]);
    const got = (frame!.payload as { value: Buffer }).value;
    expect(Buffer.isBuffer(got)).toBe(true);
    expect(got.equals(value)).toBe(true);
  });

  it('delivers a 1 MiB random Buffer byte-exact even when the stream arrives in 64 KiB chunks', () => {
    const value = randomBytes(1024 * 1024);
    const bytes = wire({ kind: FrameKind.Request, id: 9, payload: { value, tail: 'end' } });
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 65536) chunks.push(bytes.subarray(at, at + 65536));
    const frames = decodeChunks(chunks);
    expect(frames).toHaveLength(1);
    const payload = frames[0]!.payload as { value: Buffer; tail: string };
    expect(payload.tail).toBe('end');
    expect(Buffer.compare(payload.value, value)).toBe(0);
  });

  it('writes the length prefix as the number of bytes after it', () => {
    const [header, body] = encodeFrame(FrameKind.Request, 7, { a: 1 });
    expect(header.readUInt32BE(0)).toBe(header.length + body.length - 4);
    expect(header.readUInt8(4)).toBe(FrameKind.Request);
    expect(header.readUInt32BE(5)).toBe(7);
  });

  it('throws on a length prefix over MAX_FRAME_BYTES instead of buffering it', () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    expect(() => new FrameDecoder().push(prefix)).toThrow(/bad frame length/);
  });

  it('waits for more bytes on a length prefix of exactly MAX_FRAME_BYTES', () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FRAME_BYTES, 0);
    expect(new FrameDecoder().push(prefix)).toEqual([]);
  });

  it('throws on a length prefix too short to hold the kind and request id', () => {
    for (const length of [0, 1, 4]) {
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(length, 0);
      expect(() => new FrameDecoder().push(prefix)).toThrow(/bad frame length/);
    }
  });

  it('throws on a bad length prefix that follows a good frame in the same chunk', () => {
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(0xffffffff, 0);
    expect(() => new FrameDecoder().push(Buffer.concat([wire(sample[0]!), bad]))).toThrow(/bad frame length/);
  });
});
