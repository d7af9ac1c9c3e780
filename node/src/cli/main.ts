#!/usr/bin/env node
/** The `dynamo` command: run a node or a local cluster, and talk to a cluster (put/get/delete/ring). */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig, settingOptions } from '../config.js';
import { DynamoError } from '../errors.js';
import { startNode } from '../node.js';
import { runLocalCluster } from './local.js';

const USAGE = `usage: dynamo <command> [options]

commands:
  local [--nodes 3] [--host 127.0.0.1] [--http-port 8081] [--peer-port 7071] [--data-dir ./data] [-- node flags]
                              run a cluster of local node processes (npm start)
  node [flags]                run one node; flags and environment variables are listed in README.md
  put <bucket> <key> [value]  store a value (reads stdin when value is omitted)
        [--context C] [--content-type T] [--w W]
  get <bucket> <key> [--r R]  read a value; prints every sibling when there are several
  delete <bucket> <key> [--context C] [--w W]
  ring                        members, tokens and ownership as the node sees them
  help

client commands take --endpoint URL (default $DYNAMO_ENDPOINT or http://127.0.0.1:8081)`;

class UsageError extends Error {}

function int(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v < min) throw new UsageError(`--${name} must be an integer >= ${min}`);
  return v;
}

async function cmdNode(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: settingOptions(), strict: true });
  const config = loadConfig(values);
  const node = await startNode(config);
  let closing = false;
  const stop = async (signal: string) => {
    if (closing) return;
    closing = true;
    node.log.info({ signal }, 'shutting down');
    await node.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function cmdLocal(args: string[]): Promise<void> {
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const { values } = parseArgs({
    args: own,
    options: {
      nodes: { type: 'string' },
      host: { type: 'string' },
      'http-port': { type: 'string' },
      'peer-port': { type: 'string' },
      'data-dir': { type: 'string' },
    },
    strict: true,
  });
  await runLocalCluster({
    nodes: int('nodes', values.nodes, 3, 1),
    host: values.host ?? '127.0.0.1',
    httpPort: int('http-port', values['http-port'], 8081, 1),
    peerPort: int('peer-port', values['peer-port'], 7071, 1),
    dataDir: values['data-dir'] ?? './data',
    nodeArgs: dash < 0 ? [] : args.slice(dash + 1),
  });
}

const clientOptions = {
  endpoint: { type: 'string' },
  context: { type: 'string' },
  'content-type': { type: 'string' },
  r: { type: 'string' },
  w: { type: 'string' },
  tokens: { type: 'boolean' },
} as const;

function keyUrl(
  endpoint: string,
  bucket: string | undefined,
  key: string | undefined,
  query: Record<string, string | undefined>,
) {
  if (!bucket || !key) throw new UsageError('bucket and key are required');
  const url = new URL(`/buckets/${encodeURIComponent(bucket)}/keys/${encodeURIComponent(key)}`, endpoint);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

/** Prints a value as text when it is printable UTF-8, base64 otherwise. */
function printable(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: detecting binary data
  return Buffer.from(text, 'utf8').equals(bytes) && !/[\u0000-\u0008\u000e-\u001f]/.test(text)
    ? text
    : `base64:${bytes.toString('base64')}`;
}

async function failure(res: Response): Promise<never> {
  const body = await res.text();
  let message = body;
  try {
    const e = JSON.parse(body) as { error: string; message: string; needed?: number; got?: number };
    message = `${e.error}: ${e.message}`;
  } catch {
    // not JSON
  }
  throw new DynamoCliError(res.status, message);
}

class DynamoCliError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(`${status} ${message}`);
  }
}

async function cmdClient(command: string, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: clientOptions,
    allowPositionals: true,
    strict: true,
  });
  const endpoint = values.endpoint ?? process.env.DYNAMO_ENDPOINT ?? 'http://127.0.0.1:8081';
  const [bucket, key, value] = positionals;
  const headers: Record<string, string> = {};
  if (values.context) headers['X-Dynamo-Context'] = values.context;
  if (command === 'ring') {
    const res = await fetch(new URL(`/admin/ring${values.tokens ? '?tokens=true' : ''}`, endpoint));
    if (!res.ok) await failure(res);
    const ring = (await res.json()) as {
      cluster: string;
      n: number;
      members: Array<Record<string, unknown>>;
    };
    console.log(`cluster ${ring.cluster}, n=${ring.n}`);
    console.log('id\tstate\ttokens\towns\treplica share\taddress');
    for (const m of ring.members) {
      const pct = (x: unknown) => `${((x as number) * 100).toFixed(1)}%`;
      console.log(
        `${m.id}\t${m.state}\t${m.tokenCount}\t${pct(m.ownership)}\t${pct(m.replicaOwnership)}\t${m.address}`,
      );
    }
    return;
  }
  if (command === 'get') {
    const res = await fetch(keyUrl(endpoint, bucket, key, { r: values.r }));
    if (res.status === 404) throw new DynamoCliError(404, 'not found');
    if (res.status === 300) {
      const body = (await res.json()) as {
        context: string;
        siblings: Array<{ value: string; contentType: string; lastModified: string }>;
      };
      console.log(
        `${body.siblings.length} siblings (concurrent writes); write with the context to resolve them`,
      );
      body.siblings.forEach((s, i) => {
        console.log(`--- sibling ${i + 1}  ${s.contentType}  ${s.lastModified}`);
        console.log(printable(Buffer.from(s.value, 'base64')));
      });
      console.log(`context: ${body.context}`);
      return;
    }
    if (!res.ok) await failure(res);
    console.log(printable(Buffer.from(await res.arrayBuffer())));
    console.error(`context: ${res.headers.get('x-dynamo-context')}`);
    return;
  }
  if (command === 'put') {
    const body = value !== undefined ? Buffer.from(value) : readFileSync(0);
    headers['Content-Type'] = values['content-type'] ?? 'text/plain';
    const res = await fetch(keyUrl(endpoint, bucket, key, { w: values.w }), { method: 'PUT', headers, body });
    if (!res.ok) await failure(res);
    console.log(`context: ${res.headers.get('x-dynamo-context')}`);
    return;
  }
  const res = await fetch(keyUrl(endpoint, bucket, key, { w: values.w }), { method: 'DELETE', headers });
  if (!res.ok) await failure(res);
  console.log('deleted');
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case 'node':
      return cmdNode(args);
    case 'local':
      return cmdLocal(args);
    case 'put':
    case 'get':
    case 'delete':
    case 'ring':
      return cmdClient(command, args);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`dynamo: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (err instanceof DynamoCliError) {
    console.error(`dynamo: ${err.message}`);
    process.exit(1);
  }
  if (err instanceof DynamoError) {
    console.error(`dynamo: ${err.message}`);
    process.exit(2);
  }
  const cause = (err as { cause?: { code?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') {
    console.error(`dynamo: cannot reach the node (${(err as Error).message}); is the cluster running?`);
    process.exit(1);
  }
  console.error(`dynamo: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
