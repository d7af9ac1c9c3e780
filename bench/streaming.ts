#!/usr/bin/env node
/**
 * `npm run bench:streaming`: how fast join and decommission move data. Starts 3 gossip nodes on
 * loopback, loads --records objects of --value-bytes, adds a 4th node and times its join, then
 * decommissions the 2nd and times that. Throughput is object bytes moved per second of streaming
 * (from the stream's start to its end, as the node reports it: the settle wait is not counted).
 * Flags: --records 50000 --value-bytes 1024 --mib-per-second 0 (0: no limit).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { findFreePortRange, SERVER_CLI } from './cluster.js';

interface Stream {
  kind: string;
  mode: string | null;
  keys: number;
  bytes: number;
  startedAt: string;
  finishedAt: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function status(url: string): Promise<{ state: string; stream: Stream | null }> {
  return (await fetch(`${url}/admin/status`)).json() as Promise<{ state: string; stream: Stream | null }>;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function report(label: string, s: Stream): string {
  const seconds = (Date.parse(s.finishedAt!) - Date.parse(s.startedAt)) / 1000;
  const mib = s.bytes / 1024 / 1024;
  return `${label}: ${s.keys} keys, ${mib.toFixed(1)} MiB in ${seconds.toFixed(2)} s = ${(mib / seconds).toFixed(1)} MiB/s${s.mode ? ` (${s.mode})` : ''}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      records: { type: 'string', default: '50000' },
      'value-bytes': { type: 'string', default: '1024' },
      'mib-per-second': { type: 'string', default: '0' },
    },
  });
  const records = Number(values.records);
  const valueBytes = Number(values['value-bytes']);
  const root = mkdtempSync(path.join(os.tmpdir(), 'dynamo-bench-stream-'));
  const base = await findFreePortRange(8);
  const procs: ChildProcess[] = [];
  const url = (i: number) => `http://127.0.0.1:${base + i}`;
  const start = async (i: number) => {
    const peer = base + 4 + i;
    const args = [SERVER_CLI, 'node', '--node-id', `s${i + 1}`, '--cluster-name', 'bench'];
    args.push('--seeds', `127.0.0.1:${base + 4}`, '--advertise', `127.0.0.1:${peer}`);
    args.push('--http-host', '127.0.0.1', '--http-port', String(base + i), '--advertise-http', url(i));
    args.push(
      '--peer-host',
      '127.0.0.1',
      '--peer-port',
      String(peer),
      '--data-dir',
      path.join(root, `s${i + 1}`),
    );
    args.push('--ring-settle-ms', '500', '--stream-mib-per-second', String(values['mib-per-second']));
    args.push('--log-level', 'warn', ...(i === 0 ? ['--bootstrap'] : []));
    procs.push(spawn(process.execPath, args, { stdio: 'inherit' }));
  };
  try {
    await start(0);
    await until('s1 ready', async () => (await fetch(`${url(0)}/ready`)).ok, 30_000);
    await Promise.all([start(1), start(2)]);
    for (const i of [1, 2])
      await until(`s${i + 1} ready`, async () => (await fetch(`${url(i)}/ready`)).ok, 60_000);

    const value = Buffer.alloc(valueBytes, 'v');
    const loadStart = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = next++; i < records; i = next++) {
          const res = await fetch(`${url(i % 3)}/buckets/bench/keys/k${i}`, { method: 'PUT', body: value });
          if (!res.ok) throw new Error(`load: PUT k${i} answered ${res.status} ${await res.text()}`);
        }
      }),
    );
    const loadedMib = (records * valueBytes) / 1024 / 1024;
    console.log(
      `loaded ${records} objects of ${valueBytes} B (${loadedMib.toFixed(1)} MiB, n=3) in ${((Date.now() - loadStart) / 1000).toFixed(1)} s`,
    );

    await start(3);
    await until('s4 up', async () => (await status(url(3))).state === 'up', 600_000);
    console.log(report('join of a 4th node', (await status(url(3))).stream!));

    const res = await fetch(`${url(1)}/admin/decommission`, { method: 'POST' });
    if (res.status !== 202) throw new Error(`decommission answered ${res.status} ${await res.text()}`);
    await until('s2 left', async () => (await status(url(1))).state === 'left', 600_000);
    console.log(report('decommission of the 2nd node', (await status(url(1))).stream!));
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench:streaming: ${(err as Error).message}`);
  process.exit(1);
});
