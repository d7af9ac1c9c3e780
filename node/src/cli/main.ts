#!/usr/bin/env node
/** The `dynamo` command: run a node or a local cluster, talk to a cluster (put/get/delete/ring), manage a node. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DynamoClient, type Quorum } from '../client/client.js';
import { clientOptionsFromEnv, defaultEndpoint } from '../client/environment.js';
import { loadConfig, settingOptions } from '../config.js';
import { DynamoError, NotFoundError, QuorumNotMetError } from '../errors.js';
import { type RunningNode, startNode } from '../node.js';
import { writeTerminationMessage } from '../runtime/termination.js';
import { cmdCleanup, cmdDecommission, cmdStatus } from './admin.js';
import { runLocalCluster } from './local.js';

const USAGE = `usage: dynamo <command> [options]

commands:
  local [--nodes 3] [--host 127.0.0.1] [--http-port 8081] [--peer-port 7071] [--data-dir ./data] [--static]
        [--insecure] [-- node flags]
                              run a cluster of local node processes (npm start): gossip membership unless
                              --static; TLS (a local CA under <data-dir>/tls) and client tokens unless
                              --insecure (no TLS, for experiments)
  node [flags]                run one node; flags and environment variables are listed in README.md
  put <bucket> <key> [value]  store a value (reads stdin when value is omitted)
        [--context C] [--content-type T] [--w W] [--ttl SECONDS]
  get <bucket> <key> [--r R]  read a value; prints every sibling when there are several
  delete <bucket> <key> [--context C] [--w W]
  ring                        members, tokens and ownership as the node sees them
  status [--watch]            the node's state (joining, up, leaving, left) and its stream progress:
                              ranges and bytes left
  decommission [--force] [--watch]
                              stream the node's data to the other members, then leave the cluster
  cleanup [--watch]           delete the keys the node no longer replicates (after a join, a
                              decommission or a lower n); refused while a move is under way
  help

client commands take --endpoint URL (default $DYNAMO_ENDPOINT, else https://127.0.0.1:8081 when a CA is
given, http:// otherwise) and --token T
(default $DYNAMO_TOKEN) for a cluster started with --auth-tokens-file, --ca FILE (default $DYNAMO_CA)
to trust for an https:// endpoint, and --cert FILE --key FILE (default $DYNAMO_CLIENT_CERT and
$DYNAMO_CLIENT_KEY): a client certificate, for a cluster started with --http-client-ca`;

class UsageError extends Error {}

function int(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || v < min) throw new UsageError(`--${name} must be an integer >= ${min}`);
  return v;
}

async function cmdNode(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: settingOptions(), strict: true });
  let node: RunningNode;
  try {
    node = await startNode(loadConfig(values));
  } catch (err) {
    // Where Kubernetes (or any supervisor) shows why the container stopped; main then exits non-zero.
    const file = values['termination-message-file'] ?? process.env.DYNAMO_TERMINATION_MESSAGE_FILE ?? '';
    const failed = writeTerminationMessage(String(file), err);
    if (failed) console.error(`dynamo: ${failed}`);
    throw err;
  }
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
      static: { type: 'boolean' },
      insecure: { type: 'boolean' },
    },
    strict: true,
  });
  await runLocalCluster({
    static: values.static ?? false,
    insecure: values.insecure ?? false,
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
  ttl: { type: 'string' },
  tokens: { type: 'boolean' },
  watch: { type: 'boolean' },
  force: { type: 'boolean' },
  token: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const;

/** Prints a value as text when it is printable UTF-8, base64 otherwise. */
function printable(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: detecting binary data
  const binary = !Buffer.from(text, 'utf8').equals(bytes) || /[\u0000-\u0008\u000e-\u001f]/.test(text);
  return binary ? `base64:${bytes.toString('base64')}` : text;
}

const quorum = (raw: string | undefined): Quorum | undefined =>
  raw === undefined ? undefined : /^\d+$/.test(raw) ? Number(raw) : (raw as Quorum);

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

async function cmdClient(command: string, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: clientOptions,
    allowPositionals: true,
    strict: true,
  });
  const endpoint = values.endpoint ?? defaultEndpoint(process.env);
  // Flags win over DYNAMO_TOKEN, DYNAMO_CA, DYNAMO_CLIENT_CERT and DYNAMO_CLIENT_KEY; the admin calls
  // below read the same environment.
  if (values.token !== undefined) process.env.DYNAMO_TOKEN = values.token;
  if (values.ca !== undefined) process.env.DYNAMO_CA = values.ca;
  if (values.cert !== undefined) process.env.DYNAMO_CLIENT_CERT = values.cert;
  if (values.key !== undefined) process.env.DYNAMO_CLIENT_KEY = values.key;
  if (command === 'status') return cmdStatus(endpoint, values.watch ?? false);
  if (command === 'decommission')
    return cmdDecommission(endpoint, values.force ?? false, values.watch ?? false);
  if (command === 'cleanup') return cmdCleanup(endpoint, values.watch ?? false);
  const client = new DynamoClient({ ...clientOptionsFromEnv(), seeds: [endpoint], retries: 1 });
  try {
    if (command === 'ring') {
      const ring = await client.ring();
      const view = ring as typeof ring & { members: Array<Record<string, unknown>> };
      console.log(`cluster ${ring.cluster}, n=${ring.n}`);
      console.log('id\tstate\ttokens\towns\treplica share\thttp');
      for (const m of view.members) {
        console.log(
          `${m.id}\t${m.state}\t${m.tokenCount}\t${pct(m.ownership as number)}\t${pct(m.replicaOwnership as number)}\t${m.http ?? '?'}`,
        );
        if (values.tokens) console.log(`  tokens: ${(m.tokens as string[]).join(' ')}`);
      }
      return;
    }
    const [bucket, key, value] = positionals;
    if (!bucket || !key) throw new UsageError('bucket and key are required');
    if (command === 'get') {
      const got = await client.get(bucket, key, { r: quorum(values.r) });
      if ('siblings' in got) {
        console.log(
          `${got.siblings.length} siblings (concurrent writes); write with the context to resolve them`,
        );
        got.siblings.forEach((s, i) => {
          console.log(`--- sibling ${i + 1}  ${s.contentType}  ${s.lastModified.toISOString()}`);
          console.log(printable(s.value));
        });
        console.log(`context: ${got.context}`);
      } else {
        console.log(printable(got.value));
        console.error(`context: ${got.context}`);
      }
    } else if (command === 'put') {
      const body = value !== undefined ? Buffer.from(value) : readFileSync(0);
      const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
      if (ttl !== undefined && !Number.isInteger(ttl)) throw new UsageError('--ttl must be whole seconds');
      const { context } = await client.put(bucket, key, body, {
        context: values.context,
        contentType: values['content-type'] ?? 'text/plain',
        w: quorum(values.w),
        ttl,
      });
      console.log(`context: ${context}`);
    } else {
      await client.delete(bucket, key, { context: values.context, w: quorum(values.w) });
      console.log('deleted');
    }
  } finally {
    await client.close();
  }
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
    case 'status':
    case 'decommission':
    case 'cleanup':
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
  if (err instanceof NotFoundError) {
    console.error('dynamo: not found');
    process.exit(1);
  }
  if (err instanceof DynamoError) {
    // Bad configuration of `dynamo node` is a usage error; an error answer from a node is a failure.
    console.error(
      `dynamo: ${err.message}${err instanceof QuorumNotMetError ? ` (needed ${err.needed}, got ${err.got})` : ''}`,
    );
    process.exit(err.code === 'invalid_config' ? 2 : 1);
  }
  const e = err as { code?: string; cause?: { code?: string } };
  if (e.code === 'ECONNREFUSED' || e.cause?.code === 'ECONNREFUSED') {
    console.error(`dynamo: cannot reach the node (${(err as Error).message}); is the cluster running?`);
    process.exit(1);
  }
  if (err instanceof Error && err.message.startsWith('cannot reach')) {
    console.error(`dynamo: ${err.message}`);
    process.exit(1);
  }
  console.error(`dynamo: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
