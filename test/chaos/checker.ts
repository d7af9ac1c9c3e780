/**
 * The chaos checker: once faults are over and the cluster has converged, every acknowledged element of
 * every hot set, every acknowledged blind write, and every acknowledged value no covering delete was
 * acknowledged for, must be readable through every node with r=all; and every key whose covering delete
 * was acknowledged must read 404 through every node with r=all (a value there is a resurrected delete).
 */
import { inspectContext } from '../../node/src/version/context.js';
import { readValues } from '../integration/harness.js';
import {
  BLIND_BUCKET,
  DELETE_BUCKET,
  type DeleteHistory,
  HOT_BUCKET,
  readSet,
  type SetWorkload,
} from './workload.js';

export interface CheckResult {
  /** Acknowledged adds missing from the read through at least one node. */
  lostAdds: number;
  /** Acknowledged blind writes whose value a read through some node did not return. */
  lostBlind: number;
  /** Acknowledged values of the delete bucket that no covering delete was acknowledged for, not read. */
  lostKept: number;
  /** Keys whose covering delete was acknowledged that a read through some node returned a value for. */
  resurrected: number;
  /** Elements found that no client ever sent. */
  unexpected: number;
  /** Siblings on the hot keys when read (concurrent adds not yet merged by a later write). */
  siblingsLeft: number;
  /** Reads that failed outright (no answer, 5xx). */
  readErrors: number;
  /** A few of the losses, for the report. */
  examples: string[];
}

/** The key's values (none when absent), or undefined when the read failed. */
async function valuesOf(url: string, bucket: string, key: string): Promise<string[] | undefined> {
  try {
    const r = await readValues(url, bucket, key, '?r=all');
    return r.status === 200 || r.status === 300 || r.status === 404 ? r.values : undefined;
  } catch {
    return undefined;
  }
}

/** Runs f on each item, 16 at a time. */
async function each<T>(items: T[], f: (item: T, index: number) => Promise<void>): Promise<void> {
  for (let start = 0; start < items.length; start += 16)
    await Promise.all(items.slice(start, start + 16).map((item, j) => f(item, start + j)));
}

/**
 * Keys that must read 404 through every node: the number of keys some node returned a value for, and
 * of reads that failed. Exported so the self-check can run the very same check on keys that must fail it.
 */
export async function checkDeleted(
  urls: string[],
  keys: Iterable<string>,
  examples: string[] = [],
  history?: Map<string, DeleteHistory>,
): Promise<{ resurrected: number; readErrors: number }> {
  const out = { resurrected: 0, readErrors: 0 };
  await each([...keys], async (key) => {
    let back: { url: string; values: string[] } | undefined;
    for (const url of urls) {
      const got = await valuesOf(url, DELETE_BUCKET, key);
      if (got === undefined) out.readErrors++;
      else if (got.length > 0) back ??= { url, values: got };
    }
    if (back) {
      out.resurrected++;
      if (examples.length < 10) {
        const h = history?.get(key);
        const past = h ? `; through ${h.node}: ${h.at}` : '';
        examples.push(
          `deleted ${key} is back: ${JSON.stringify(back.values)}, now ${await describeVersion(back.url, key)}${past}`,
        );
      }
    }
  });
  return out;
}

/** The version a read with r=all returns now: status, sibling times and the context's version vector. */
async function describeVersion(url: string, key: string): Promise<string> {
  try {
    const res = await fetch(`${url}/buckets/${DELETE_BUCKET}/keys/${key}?r=all`, {
      signal: AbortSignal.timeout(5000),
    });
    const context = res.headers.get('x-dynamo-context');
    const vv = context ? JSON.stringify(inspectContext(context)) : 'none';
    const text = await res.text();
    const body = res.status === 300 ? ` siblings ${text}` : '';
    const modified = res.headers.get('last-modified') ?? '';
    return `${res.status} ${modified} context ${vv}${body}`;
  } catch (err) {
    return `(read failed: ${(err as Error).message})`;
  }
}

export async function check(urls: string[], w: SetWorkload): Promise<CheckResult> {
  const out: CheckResult = {
    lostAdds: 0,
    lostBlind: 0,
    lostKept: 0,
    resurrected: 0,
    unexpected: 0,
    siblingsLeft: 0,
    readErrors: 0,
    examples: [],
  };
  for (const [key, acked] of w.acked) {
    const missing = new Set<string>();
    for (const [i, url] of urls.entries()) {
      let read: Awaited<ReturnType<typeof readSet>>;
      try {
        read = await readSet(url, HOT_BUCKET, key, '?r=all', 10_000);
      } catch {
        out.readErrors++;
        continue;
      }
      if (read.status !== 200 && read.status !== 300 && read.status !== 404) {
        out.readErrors++;
        continue;
      }
      if (i === 0) {
        out.siblingsLeft += Math.max(0, read.siblings - 1);
        for (const e of read.elements) if (!w.attemptedElements.has(e)) out.unexpected++;
      }
      for (const e of acked) if (!read.elements.has(e)) missing.add(e);
    }
    out.lostAdds += missing.size;
    for (const e of [...missing].slice(0, 3)) out.examples.push(`${key} lost ${e}`);
  }
  // A fresh key each: read through one node each (rotating), with r=all.
  const single = async (bucket: string, values: Map<string, string>) => {
    let lost = 0;
    await each([...values.keys()], async (key, j) => {
      const got = await valuesOf(urls[j % urls.length]!, bucket, key);
      if (got === undefined) out.readErrors++;
      else if (!got.includes(values.get(key)!)) {
        lost++;
        if (out.examples.length < 10)
          out.examples.push(`${bucket} ${key} missing (read ${JSON.stringify(got)})`);
      }
    });
    return lost;
  };
  out.lostBlind = await single(BLIND_BUCKET, w.blind);
  out.lostKept = await single(DELETE_BUCKET, w.kept);
  const deleted = await checkDeleted(urls, w.deleted, out.examples, w.deleteHistory);
  out.resurrected = deleted.resurrected;
  out.readErrors += deleted.readErrors;
  return out;
}
