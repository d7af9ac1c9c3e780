/**
 * `dynamo local`: a cluster of node processes on this machine (what `npm start` runs).
 * Each node logs to <data-dir>/<id>/node.log; Ctrl-C stops them all cleanly.
 *
 * Membership is gossip (failure detection, joins, decommission and removal work as on Kubernetes): every
 * node lists all of them as seeds, and n1 founds the cluster (--bootstrap) when no node has data yet. A
 * node whose directory was wiped later rejoins and is rebuilt from the others. --static runs them with a
 * fixed member list instead.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, fetch } from 'undici';
import { localCredentials } from './local-credentials.js';

export interface LocalClusterOptions {
  nodes: number;
  host: string;
  httpPort: number;
  peerPort: number;
  dataDir: string;
  /** Static membership (--members) instead of gossip. */
  static: boolean;
  /** Extra flags passed to every node (e.g. --tokens 64). */
  nodeArgs: string[];
  /** No TLS and no client tokens: plain TCP between nodes, an open plain-HTTP API. */
  insecure: boolean;
}

/** How long a local node joining the cluster waits for writes routed by the old ring (no network hops here). */
const LOCAL_RING_SETTLE_MS = 1000;

interface LocalNode {
  id: string;
  url: string;
  child: ChildProcess;
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

async function waitReady(
  url: string,
  child: ChildProcess,
  timeoutMs: number,
  dispatcher: Agent | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`${url}/ready`, dispatcher ? { dispatcher } : {});
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready after ${timeoutMs} ms`);
}

/** Starts the nodes, waits until all serve, and keeps running until SIGINT/SIGTERM. */
export async function runLocalCluster(o: LocalClusterOptions): Promise<void> {
  const dataDir = resolve(o.dataDir);
  const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const members = ids.map((id, i) => `${id}=${o.host}:${o.peerPort + i}`).join(',');
  const seeds = ids.map((_, i) => `${o.host}:${o.peerPort + i}`).join(',');
  // A LevelDB database holds a CURRENT file: no node has one on the very first start only.
  const fresh = ids.every((id) => !existsSync(join(dataDir, id, 'CURRENT')));
  const creds = localCredentials(dataDir, ids, o.host, o.insecure);
  const { secretFile, tokensFile, newTokens, adminToken, tls } = creds;
  const scheme = tls ? 'https' : 'http';
  const dispatcher = tls ? new Agent({ connect: { ca: readFileSync(tls.ca) } }) : undefined;
  if (!tls) {
    console.warn(
      '\n*** --insecure: no TLS and no client tokens. Nodes talk plain TCP and trust what peers say ' +
        'they are; the HTTP API is open to anyone who can reach it. For experiments on a trusted machine only. ***\n',
    );
  }
  let stopping = false;
  const nodes: LocalNode[] = ids.map((id, i) => {
    const dir = join(dataDir, id);
    mkdirSync(dir, { recursive: true });
    const logFile = join(dir, 'node.log');
    const out = createWriteStream(logFile, { flags: 'a' });
    const membership = o.static
      ? ['--members', members]
      : ['--seeds', seeds, '--advertise', `${o.host}:${o.peerPort + i}`];
    if (!o.static) membership.push('--ring-settle-ms', String(LOCAL_RING_SETTLE_MS));
    if (!o.static && fresh && i === 0) membership.push('--bootstrap');
    const args = [MAIN, 'node', '--node-id', id, ...membership, '--data-dir', dir];
    args.push('--context-secret-file', secretFile);
    if (tls) {
      args.push('--auth-tokens-file', tokensFile);
      const own = tls.node(id);
      args.push('--tls-cert', own.cert, '--tls-key', own.key, '--tls-ca', tls.ca);
      args.push('--http-tls-cert', own.cert, '--http-tls-key', own.key);
    }
    args.push('--http-host', o.host, '--http-port', String(o.httpPort + i));
    args.push('--advertise-http', `${scheme}://${o.host}:${o.httpPort + i}`);
    args.push('--peer-host', o.host, '--peer-port', String(o.peerPort + i), ...o.nodeArgs);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    child.on('exit', (code, signal) => {
      if (!stopping) console.error(`node ${id} exited (${signal ?? `code ${code}`}); see ${logFile}`);
    });
    return { id, url: `${scheme}://${o.host}:${o.httpPort + i}`, child };
  });

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping nodes...');
    await Promise.all(
      nodes.map(
        ({ child }) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const kill = setTimeout(() => child.kill('SIGKILL'), 30_000); // a node drains its writes first
            child.once('exit', () => {
              clearTimeout(kill);
              done();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    console.log('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  try {
    await Promise.all(
      nodes.map((n) =>
        waitReady(n.url, n.child, 30_000, dispatcher).catch((err: Error) => {
          throw new Error(`node ${n.id}: ${err.message}; see ${join(dataDir, n.id, 'node.log')}`);
        }),
      ),
    );
  } catch (err) {
    console.error(`dynamo local: ${(err as Error).message}`);
    await stop();
    return;
  }
  const first = nodes[0]!.url;
  console.log(`dynamo-kv: ${o.nodes}-node cluster ready (data in ${dataDir})`);
  for (const n of nodes) console.log(`  ${n.id}  ${n.url}`);
  await dispatcher?.close();
  const tokenNote = !tls
    ? 'No client tokens (--insecure): the API is open.'
    : newTokens
      ? `Client tokens (admin, write, read) were made in ${tokensFile}; the admin one:
  export DYNAMO_TOKEN=${adminToken}`
      : `Client tokens are in ${tokensFile}:
  export DYNAMO_TOKEN=$(awk '$1 == "admin" { print $2 }' ${tokensFile})`;
  const ca = tls ? relative(process.cwd(), tls.ca) || tls.ca : undefined;
  const tlsNote = ca
    ? `TLS is on: nodes hold certificates of a local CA (${tls!.newCa ? 'made now ' : ''}in ${relative(process.cwd(), tls!.dir) || tls!.dir}); clients trust it with
  export DYNAMO_CA=${ca} DYNAMO_ENDPOINT=${first}`
    : `TLS is off (--insecure).`;
  const cacert = ca ? ' --cacert "$DYNAMO_CA"' : '';
  console.log(`
${tokenNote}
${tlsNote}

Try:
  curl${cacert} -X PUT -H "Authorization: Bearer $DYNAMO_TOKEN" -H 'Content-Type: text/plain' --data 'hello' ${first}/buckets/demo/keys/greeting
  curl${cacert} -i -H "Authorization: Bearer $DYNAMO_TOKEN" ${nodes[nodes.length - 1]!.url}/buckets/demo/keys/greeting
  npx dynamo get demo greeting       (CLI: reads $DYNAMO_TOKEN${ca ? ', $DYNAMO_CA and $DYNAMO_ENDPOINT' : ''}; --endpoint picks a node)
  npx dynamo ring

Press Ctrl-C to stop.`);
}
