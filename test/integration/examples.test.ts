import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SessionStore } from '../../examples/session-store.js';
import { cartItems, mergeCarts, ShoppingCarts } from '../../examples/shopping-cart.js';
import { DynamoClient } from '../../node/src/client/client.js';
import { TestCluster } from './harness.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DIST = resolve(import.meta.dirname, '../../dist/examples');

describe('the example applications on a 3-node cluster', () => {
  let c: TestCluster;
  let client: DynamoClient;
  beforeAll(async () => {
    c = await TestCluster.start(3);
    client = new DynamoClient({ seeds: [c.url(0)] });
  });
  afterAll(async () => {
    await client?.close();
    await c?.stop();
  });

  it('merges a shopping cart edited concurrently on two devices: adds win, removals stick', async () => {
    const carts = new ShoppingCarts(client);
    await carts.add('ada', 'pen');
    const phone = await carts.open('ada');
    const laptop = await carts.open('ada');
    phone.add('book'); // the phone still has the pen
    laptop.remove('pen');
    laptop.add('lamp');
    await phone.save();
    await laptop.save();

    const raw = await client.get('carts', 'ada', { r: 'all' });
    expect('siblings' in raw && raw.siblings.length).toBe(2); // the conflict really happened
    expect(await carts.items('ada')).toEqual(['book', 'lamp']);

    await carts.add('ada', 'cup'); // an online edit resolves the siblings for good
    const after = await client.get('carts', 'ada', { r: 'all' });
    expect('value' in after).toBe(true);
    expect(await carts.items('ada')).toEqual(['book', 'cup', 'lamp']);
  });

  it('keeps every item when many devices add to one cart at once', async () => {
    const devices = [0, 1, 2].map(
      (i) => new ShoppingCarts(new DynamoClient({ seeds: [c.url(i)], routing: 'any' })),
    );
    const items = Array.from({ length: 12 }, (_, i) => `item-${String(i).padStart(2, '0')}`);
    await Promise.all(items.map((item, i) => devices[i % 3]!.add('grace', item)));
    expect(await new ShoppingCarts(client).items('grace')).toEqual(items);
  });

  it('merge is commutative, associative and idempotent, so replicas converge whatever the order', () => {
    const a = { adds: { pen: ['t1'] }, removed: [] };
    const b = { adds: { pen: ['t2'], cup: ['t3'] }, removed: ['t1'] };
    const c3 = { adds: {}, removed: ['t3'] };
    expect(mergeCarts(a, b)).toEqual(mergeCarts(b, a));
    expect(mergeCarts(mergeCarts(a, b), c3)).toEqual(mergeCarts(a, mergeCarts(b, c3)));
    expect(mergeCarts(b, b)).toEqual(mergeCarts(b, { adds: {}, removed: [] }));
    expect(cartItems(mergeCarts(mergeCarts(a, b), c3))).toEqual(['pen']); // t2 was never removed
  });

  it('expires sessions that are not touched, and keeps touched ones alive', async () => {
    const sessions = new SessionStore(client, { bucket: 'web-sessions', ttlSeconds: 1 });
    await sessions.init();
    const kept = await sessions.create({ user: 'ada' });
    const dropped = await sessions.create({ user: 'grace' });
    expect(await sessions.get(kept)).toEqual({ user: 'ada' });
    await sleep(600);
    expect(await sessions.touch(kept)).toBe(true);
    await sleep(600); // 1.2 s after creation
    expect(await sessions.get(kept)).toEqual({ user: 'ada' });
    expect(await sessions.get(dropped)).toBeUndefined();
    expect(await sessions.touch(dropped)).toBe(false);
    await sleep(1100);
    for (let i = 0; i < 3; i++) {
      const direct = new SessionStore(new DynamoClient({ seeds: [c.url(i)], routing: 'any' }), {
        bucket: 'web-sessions',
      });
      expect(await direct.get(kept)).toBeUndefined();
    }
    const gone = await sessions.create({ user: 'x' });
    await sessions.destroy(gone);
    expect(await sessions.get(gone)).toBeUndefined();
  });

  it('runs both example programs against the cluster', async () => {
    const env = { ...process.env, DYNAMO_ENDPOINT: c.url(1) };
    const cart = await run(process.execPath, [resolve(DIST, 'shopping-cart.js')], { env });
    expect(cart.stdout).toContain("merged cart (book and lamp kept, pen stays removed): [ 'book', 'lamp' ]");
    const sessions = await run(process.execPath, [resolve(DIST, 'session-store.js')], {
      env,
      timeout: 20_000,
    });
    expect(sessions.stdout).toContain('after 2 s untouched: undefined');
  }, 30_000);
});
