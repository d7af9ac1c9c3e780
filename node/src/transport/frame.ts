/**
 * Binary framing of the node-to-node protocol: [u32 length][u8 kind][u32 request id][msgpack payload],
 * length counting everything after itself. Pure: encode frames, split a byte stream back into frames.
 */
import { Packr } from 'msgpackr';

export enum FrameKind {
  Hello = 1,
  HelloOk = 2,
  Request = 3,
  Reply = 4,
  ErrorReply = 5,
}

export interface Frame {
  kind: FrameKind;
  id: number;
  payload: unknown;
}

const HEADER = 9;
/** Largest frame accepted from a peer that said hello; a longer length prefix means a broken or hostile stream. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Largest frame accepted before the hello (a hello is a few dozen bytes). */
export const MAX_HELLO_FRAME_BYTES = 4 * 1024;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Header and payload of one frame, as two buffers to write back to back. */
export function encodeFrame(kind: FrameKind, id: number, payload: unknown): [Buffer, Buffer] {
  const body = packr.pack(payload);
  const header = Buffer.allocUnsafe(HEADER);
  header.writeUInt32BE(body.length + HEADER - 4, 0);
  header.writeUInt8(kind, 4);
  header.writeUInt32BE(id, 5);
  return [header, body];
}

/** Reassembles frames from arbitrary chunks of a byte stream. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /**
   * maxFrameBytes bounds every frame: a longer length prefix throws as soon as it arrives, before any of
   * the frame is buffered. It may be raised later (once the peer is known).
   */
  constructor(public maxFrameBytes = MAX_FRAME_BYTES) {}

  /** Adds bytes; returns every frame now complete. Throws on a frame over maxFrameBytes or a bad payload. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length < HEADER - 4 || length > this.maxFrameBytes) throw new Error(`bad frame length ${length}`);
      if (this.buffered < length + 4) break;
      const bytes = this.take(length + 4);
      frames.push({
        kind: bytes.readUInt8(4) as FrameKind,
        id: bytes.readUInt32BE(5),
        payload: packr.unpack(bytes.subarray(HEADER)),
      });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const joined = this.peek(n);
    this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    this.buffered -= n;
    return joined.subarray(0, n);
  }
}
