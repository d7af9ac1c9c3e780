/**
 * Bounded fuzzing of a real node: thousands of random and malformed HTTP requests and peer frames
 * (seeded, so a failure replays). None may get a 500 or crash the node, and every write acknowledged
 * before the fuzzing must read back after it.
 */
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REQUESTS } from '../../node/src/protocol/schema.js';
import { encodeFrame, FrameDecoder, FrameKind } from '../../node/src/transport/frame.js';
import { TestCluster } from './harness.js';

const SEED = 20261202;
const ACKED = Array.from({ length: 50 }, (_, i) => `acked-${i}`);

describe('fuzzing a node', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await TestCluster.start(1, ['--default-n', '1', '--default-r', '1', '--default-w', '1']);
    for (const k of ACKED)
      expect((await fetch(`${c.url(0)}/buckets/fuzz/keys/${k}`, { method: 'PUT', body: k })).status).toBe(
        204,
      );
  });
  afterAll(async () => {
    await c.stop();
  });

  const survived = async () => {
    expect(c.nodes[0]!.proc!.exitCode).toBeNull();
    for (const k of ACKED) expect(await (await fetch(`${c.url(0)}/buckets/fuzz/keys/${k}`)).text()).toBe(k);
  };

  it('answers 3,000 random HTTP requests without a 500', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'fuzz',
        'buckets',
        'keys',
        'props',
        'admin',
        'ring',
        'status',
        '%00',
        '%ZZ',
        '..',
        '%2F',
        '',
      ),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
      fc.string({ unit: 'binary', maxLength: 300 }).map(encodeURIComponent),
    );
    const request = fc.record({
      method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
      path: fc.oneof(
        fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => `/${s.join('/')}`),
        fc.tuple(segment, segment).map(([b, k]) => `/buckets/${b}/keys/${k}`),
        segment.map((b) => `/buckets/${b}/props`),
      ),
      query: fc.dictionary(
        fc.constantFrom('r', 'w', 'timeout', 'ttl', 'strict', 'returnbody', 'force', 'tokens', 'x'),
        fc.oneof(
          fc.constantFrom('1', '0', 'all', 'quorum', 'one', 'true', '-1', '1e309', '99999999999'),
          fc.string(),
        ),
      ),
      contentType: fc.option(
        fc.string({ maxLength: 300 }).filter((s) => !/[\r\n\0]/.test(s) && /^[\t\x20-\x7e]*$/.test(s)),
      ),
      context: fc.option(
        fc.oneof(
          fc.base64String(),
          fc.string({ maxLength: 100 }).filter((s) => /^[\x21-\x7e]*$/.test(s)),
        ),
      ),
      body: fc.option(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
        ),
      ),
    });
    const cases = fc.sample(request, { numRuns: 3000, seed: SEED });
    const statuses = new Map<number, number>();
    for (const r of cases) {
      const q = new URLSearchParams(r.query).toString();
      const headers: Record<string, string> = {};
      if (r.contentType !== null) headers['content-type'] = r.contentType;
      if (r.context !== null) headers['x-dynamo-context'] = r.context;
      const withBody = r.body !== null && !['GET', 'HEAD'].includes(r.method);
      const res = await fetch(`${c.url(0)}${r.path}${q ? `?${q}` : ''}`, {
        method: r.method,
        headers,
        ...(withBody ? { body: r.body as string | Buffer } : {}),
      }).catch((err: Error) => ({ status: -1, text: async () => err.message }));
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500 && res.status !== 503)
        throw new Error(`${r.method} ${r.path}?${q} -> ${res.status}: ${await res.text()}`);
    }
    console.log(`http fuzz: 3000 requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    await survived();
  });

  it('answers 2,000 random peer frames with replies or typed errors, and keeps serving', async () => {
    const socket = connect(c.nodes[0]!.peerPort, '127.0.0.1');
    const decoder = new FrameDecoder();
    const answers: Array<{ kind: FrameKind; payload: unknown }> = [];
    socket.on('data', (d) => answers.push(...decoder.push(d)));
    await new Promise((r) => socket.once('connect', r));
    for (const part of encodeFrame(FrameKind.Hello, 0, { cluster: 'dynamo', node: 'fuzzer', protocol: 1 }))
      socket.write(part);
    const ops = [...Object.keys(REQUESTS), 'nope'];
    // Every field name some op's schema knows: on another op it is unknown.
    const FIELDS = [...new Set(Object.values(REQUESTS).flatMap((s) => Object.keys(s.properties)))];
    const payload = fc.oneof(
      fc.anything(),
      fc
        .record({ op: fc.constantFrom(...ops) }, { requiredKeys: ['op'] })
        .chain((base) =>
          fc.dictionary(fc.constantFrom(...FIELDS), fc.anything()).map((rest) => ({ ...rest, ...base })),
        ),
    );
    const frames = fc.sample(payload, { numRuns: 2000, seed: SEED });
    frames.forEach((p, i) => {
      for (const part of encodeFrame(FrameKind.Request, i + 1, p)) socket.write(part);
    });
    const deadline = Date.now() + 30_000;
    while (answers.length < frames.length + 1 && Date.now() < deadline && !socket.destroyed)
      await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    const codes = new Map<string, number>();
    for (const a of answers.slice(1)) {
      const code = a.kind === FrameKind.Reply ? 'reply' : String((a.payload as { code?: string }).code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    console.log(`peer fuzz: ${frames.length} frames, answers ${JSON.stringify(Object.fromEntries(codes))}`);
    expect(answers.length).toBe(frames.length + 1);
    expect(codes.get('internal') ?? 0).toBe(0);
    await survived();
    // And it restarts on what the fuzzing left in its database.
    await c.kill(0);
    await c.startNode(0);
    await survived();
  }, 90_000);
});
