/**
 * The shopping cart of the Dynamo paper: every device can always add to the cart, even offline or during
 * a partition, and concurrent edits merge instead of overwriting each other.
 *
 * The cart is an observed-remove set: each add carries a unique tag, a removal records the tags it saw.
 * Merging two versions takes the union of both, so an add always survives a concurrent edit (add wins),
 * and a removed item does not come back when a device that still had it writes its stale copy.
 *
 * Run against `npm start`:  npm run build && node dist/examples/shopping-cart.js
 * (Applications import DynamoClient from 'dynamo-kv'; this example uses the source tree.)
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { clientOptionsFromEnv, DynamoClient, NotFoundError, type Sibling } from '../node/src/index.js';

/** The stored form: item → tags of its adds, and the tags removed since. */
export interface CartState {
  adds: Record<string, string[]>;
  removed: string[];
}

const empty = (): CartState => ({ adds: {}, removed: [] });

/** Union of two cart versions: nothing added or removed on either side is lost. */
export function mergeCarts(a: CartState, b: CartState): CartState {
  const adds: Record<string, string[]> = {};
  for (const item of new Set([...Object.keys(a.adds), ...Object.keys(b.adds)])) {
    adds[item] = [...new Set([...(a.adds[item] ?? []), ...(b.adds[item] ?? [])])].sort();
  }
  return { adds, removed: [...new Set([...a.removed, ...b.removed])].sort() };
}

/** The items in the cart: those with an add that no removal has seen. */
export function cartItems(cart: CartState): string[] {
  const removed = new Set(cart.removed);
  return Object.entries(cart.adds)
    .filter(([, tags]) => tags.some((t) => !removed.has(t)))
    .map(([item]) => item)
    .sort();
}

const decode = (value: Buffer): CartState => JSON.parse(value.toString('utf8')) as CartState;
const encode = (cart: CartState) => JSON.stringify(cart);
const resolve = (siblings: Sibling[]) => encode(siblings.map((s) => decode(s.value)).reduce(mergeCarts));

/** One device's view of a cart: edits are local until save(), which writes with the context it read. */
export class CartSession {
  constructor(
    private readonly client: DynamoClient,
    private readonly bucket: string,
    readonly user: string,
    private state: CartState,
    private readonly context: string | undefined,
  ) {}

  add(item: string): void {
    this.state = mergeCarts(this.state, { adds: { [item]: [randomUUID()] }, removed: [] });
  }

  remove(item: string): void {
    this.state = {
      ...this.state,
      removed: [...new Set([...this.state.removed, ...(this.state.adds[item] ?? [])])],
    };
  }

  items(): string[] {
    return cartItems(this.state);
  }

  /** Writes this device's version; if another device saved meanwhile, the two become siblings. */
  async save(): Promise<void> {
    await this.client.put(this.bucket, this.user, encode(this.state), {
      context: this.context,
      contentType: 'application/json',
    });
  }
}

export class ShoppingCarts {
  constructor(
    private readonly client: DynamoClient,
    private readonly bucket = 'carts',
  ) {}

  /** Reads a user's cart, merging any concurrent versions, for a device to edit. */
  async open(user: string): Promise<CartSession> {
    try {
      const got = await this.client.get(this.bucket, user);
      const state = 'siblings' in got ? decode(Buffer.from(resolve(got.siblings))) : decode(got.value);
      return new CartSession(this.client, this.bucket, user, state, got.context);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      return new CartSession(this.client, this.bucket, user, empty(), err.context);
    }
  }

  /** Adds an item in one read-merge-write round (what an online device does). */
  async add(user: string, item: string): Promise<void> {
    const tag = randomUUID();
    await this.client.update(
      this.bucket,
      user,
      (cur) => encode(mergeCarts(cur ? decode(cur) : empty(), { adds: { [item]: [tag] }, removed: [] })),
      { resolve, contentType: 'application/json' },
    );
  }

  /** The items in a user's cart, with concurrent versions merged. */
  async items(user: string): Promise<string[]> {
    return (await this.open(user)).items();
  }
}

async function main(): Promise<void> {
  // npm start turns TLS and authentication on: export DYNAMO_TOKEN and DYNAMO_CA as it prints.
  const client = new DynamoClient(clientOptionsFromEnv());
  const carts = new ShoppingCarts(client);
  const user = `demo-${Date.now()}`;
  try {
    await carts.add(user, 'pen');
    console.log(`cart of ${user}:`, await carts.items(user));
    // Two devices read the cart, then edit it without seeing each other's changes.
    const phone = await carts.open(user);
    const laptop = await carts.open(user);
    phone.add('book');
    laptop.remove('pen');
    laptop.add('lamp');
    await phone.save();
    await laptop.save();
    const raw = await client.get('carts', user);
    console.log('siblings on the server:', 'siblings' in raw ? raw.siblings.length : 1);
    console.log('merged cart (book and lamp kept, pen stays removed):', await carts.items(user));
  } finally {
    await client.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`shopping-cart: ${err.message}; is the cluster running (npm start)?`);
    process.exit(1);
  });
}
