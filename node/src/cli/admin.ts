/** `dynamo status`, `decommission` and `cleanup`: one node's lifecycle, its streams and its cleanup. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch } from 'undici';
import { clientOptionsFromEnv } from '../client/environment.js';
import type { CleanupStatus } from '../streaming/cleanup.js';
import type { StreamStatus } from '../streaming/streamer.js';

interface NodeStatus {
  id: string;
  cluster: string;
  state: string;
  stream: StreamStatus | null;
  cleanup?: CleanupStatus;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** Calls a node's admin API; throws Error with the node's own message on an error answer. */
async function admin(endpoint: string, path: string, method = 'GET'): Promise<NodeStatus> {
  const { token, ca, cert, key } = clientOptionsFromEnv();
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const dispatcher = ca || cert ? new Agent({ connect: { ca, cert, key } }) : undefined;
  const res = await fetch(new URL(path, endpoint), {
    method,
    headers,
    signal: AbortSignal.timeout(10_000),
    ...(dispatcher ? { dispatcher } : {}),
  }).catch((err: Error) => {
    const cause = (err.cause as Error | undefined)?.message ?? err.message;
    throw new Error(`cannot reach the node at ${endpoint} (${cause}); is it running?`);
  });
  const body = (await res.json()) as NodeStatus & { error?: string; message?: string };
  if (!res.ok) throw new Error(`${body.message ?? res.statusText} (${res.status} ${body.error ?? ''})`);
  return body;
}

/** Human-readable lines for a node's status. */
export function formatStatus(s: NodeStatus): string[] {
  const lines = [`node ${s.id} (cluster ${s.cluster}): ${s.state}`];
  const c = s.cleanup;
  if (c?.startedAt) {
    const when = c.running ? `running since ${c.startedAt}` : `finished ${c.finishedAt}`;
    lines.push(
      `cleanup, ${when}: ${c.scanned} of ~${c.total} keys scanned, ${c.deleted} deleted` +
        (c.lastError ? ` (stopped: ${c.lastError})` : ''),
    );
  }
  const st = s.stream;
  if (!st) return lines;
  const when = st.finishedAt ? `finished ${st.finishedAt}` : `running since ${st.startedAt}`;
  lines.push(
    `${st.kind}${st.mode ? ` (${st.mode})` : ''}, ${when}: ${st.rangesPending} of ${st.rangesTotal} ranges left, ` +
      `${st.keys} keys / ${mb(st.bytes)} moved, at most ${mb(st.bytesLeft)} left to scan`,
  );
  for (const p of st.peers) {
    const share = p.total > 0 ? Math.min(100, (p.scanned / p.total) * 100).toFixed(0) : '0';
    lines.push(
      `  ${st.kind === 'join' ? 'from' : 'scan of'} ${p.id}: ${p.done ? 'done' : `${share}% scanned`}`,
    );
  }
  if (st.error) lines.push(`  retrying: ${st.error}`);
  return lines;
}

/** Prints the status once, or with watch every second until no join or decommission is running. */
export async function cmdStatus(endpoint: string, watch: boolean): Promise<void> {
  for (;;) {
    const s = await admin(endpoint, '/admin/status');
    console.log(formatStatus(s).join('\n'));
    if (!watch || (s.state !== 'joining' && s.state !== 'leaving')) return;
    await sleep(1000);
  }
}

/** Starts the node's decommission, then (with watch) follows it until the node has left. */
export async function cmdDecommission(endpoint: string, force: boolean, watch: boolean): Promise<void> {
  const s = await admin(endpoint, `/admin/decommission${force ? '?force=true' : ''}`, 'POST');
  console.log(formatStatus(s).join('\n'));
  if (watch) await cmdStatus(endpoint, true);
}

/** Starts a cleanup run, then (with watch) follows it until it has finished. */
export async function cmdCleanup(endpoint: string, watch: boolean): Promise<void> {
  let s = await admin(endpoint, '/admin/cleanup', 'POST');
  console.log(formatStatus(s).join('\n'));
  while (watch && s.cleanup?.running) {
    await sleep(1000);
    s = await admin(endpoint, '/admin/status');
    console.log(formatStatus(s).join('\n'));
  }
}
