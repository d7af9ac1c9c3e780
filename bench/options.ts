/**
 * Command-line flags of `npm run bench`: one table holds each flag's meaning and default, and drives both
 * parsing (node:util parseArgs) and --help. Bad values raise UsageError (exit code 2).
 */
import { parseArgs } from 'node:util';
import { WORKLOAD_NAMES, WORKLOADS, type WorkloadName } from './workload.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface BenchOptions {
  records: number;
  operations: number;
  /** When set, each workload runs this long and --operations is ignored. */
  durationSec: number | undefined;
  concurrency: number;
  valueSize: number;
  workloads: WorkloadName[];
  /** Size of the local cluster started when no endpoints are given. */
  nodes: number;
  /** An existing cluster to benchmark instead of a local one. */
  endpoints: string[] | undefined;
  /** An existing node to use as the baseline instead of a local 1-node cluster. */
  baselineEndpoint: string | undefined;
  /** Whether a baseline is measured at all. */
  baseline: boolean;
  /** Also run the workloads through DynamoClient (client-routed) on the cluster. */
  routing: boolean;
  /** Also run the local cluster with `dynamo local --insecure` (no TLS, no tokens): what security costs. */
  compareInsecure: boolean;
  /** Restart the local cluster after the load and measure its start on the loaded data. */
  restart: boolean;
  /** Also run a local cluster whose bucket has conflict: lww (last write wins, no siblings). */
  lww: boolean;
  /** After each workload, run it open-loop at half its closed-loop ops/s (p50/p99 below saturation). */
  halfLoad: boolean;
  bucket: string;
  out: string;
  seed: number;
}

interface FlagSpec {
  type: 'string' | 'boolean';
  /** Placeholder shown in --help. */
  arg?: string;
  default?: string;
  help: string;
}

const FLAGS = {
  records: { type: 'string', arg: 'N', default: '100000', help: 'records inserted by the load phase' },
  operations: {
    type: 'string',
    arg: 'N',
    default: '100000',
    help: 'operations per workload (unless --duration is given)',
  },
  duration: {
    type: 'string',
    arg: 'SECONDS',
    help: 'run each workload for this long instead of --operations',
  },
  concurrency: { type: 'string', arg: 'N', default: '32', help: 'parallel closed-loop clients' },
  'value-size': { type: 'string', arg: 'BYTES', default: '1024', help: 'size of each written value' },
  workloads: {
    type: 'string',
    arg: 'LIST',
    default: 'a,b,c',
    help: `workloads to run, in order: ${WORKLOAD_NAMES.map((n) => `${n} = ${WORKLOADS[n].description}`).join('; ')}`,
  },
  nodes: {
    type: 'string',
    arg: 'N',
    default: '3',
    help: 'nodes of the local cluster started without --endpoints',
  },
  endpoints: {
    type: 'string',
    arg: 'URLS',
    help: 'comma-separated http://host:port of an existing cluster; no local cluster is started, and no baseline unless --baseline-endpoint is given',
  },
  'baseline-endpoint': {
    type: 'string',
    arg: 'URL',
    help: 'an existing node to use as the baseline (its bucket props are set to n=1,r=1,w=1)',
  },
  'no-baseline': {
    type: 'boolean',
    help: 'skip the baseline (same workloads on a fresh 1-node cluster with n=1,r=1,w=1)',
  },
  'no-routing': {
    type: 'boolean',
    help: 'skip the second pass of the workloads through DynamoClient, which routes each request to a replica of its key',
  },
  'compare-insecure': {
    type: 'boolean',
    help: 'also run the local cluster without TLS and client tokens (dynamo local --insecure) and compare: the cost of TLS and auth',
  },
  'no-restart': {
    type: 'boolean',
    help: 'skip the restart of the local cluster after the load (which measures, per node, the time to /health and /ready, memory and one anti-entropy exchange on the loaded data)',
  },
  'no-lww': {
    type: 'boolean',
    help: 'skip the second local cluster whose bucket has conflict: lww (last write wins), measured like the first to compare the conflict modes (never run with --endpoints)',
  },
  'no-half-load': {
    type: 'boolean',
    help: 'skip the open-loop phase after each workload, offered half the ops/s the workload reached (its p50 and p99 are timed from when each operation was due)',
  },
  bucket: { type: 'string', arg: 'NAME', default: 'ycsb', help: 'bucket the records live in' },
  out: {
    type: 'string',
    arg: 'FILE',
    default: 'bench/results/ycsb-<ISO timestamp>.json',
    help: 'JSON result file (its directory is created)',
  },
  seed: { type: 'string', arg: 'N', default: 'random', help: 'seed for keys, operation mix and values' },
  help: { type: 'boolean', help: 'show this help' },
} satisfies Record<string, FlagSpec>;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

/** The --help text: every flag with its default. */
export function helpText(): string {
  const rows = Object.entries(FLAGS).map(([name, spec]: [string, FlagSpec]) => {
    const flag = `--${name}${spec.arg ? ` ${spec.arg}` : ''}`;
    const def = spec.default === undefined ? '' : ` (default: ${spec.default})`;
    return wrap(`${spec.help}${def}`, 72)
      .map((line, i) => `  ${(i === 0 ? flag : '').padEnd(28)} ${line}`)
      .join('\n');
  });
  return [
    'Usage: npm run bench -- [flags]      (or: node dist/bench/ycsb.js [flags])',
    '',
    'YCSB-style benchmark of the dynamo-kv HTTP API: loads --records keys, then runs each workload with',
    'scrambled-zipfian keys, and compares with a 1-node n=1,r=1,w=1 baseline.',
    '',
    'Flags:',
    ...rows,
    '',
  ].join('\n');
}

function integer(flag: string, raw: string, min: number): number {
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`--${flag} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

function positiveNumber(flag: string, raw: string): number {
  const value = /^\d+(\.\d+)?$|^\.\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value > 0) || !Number.isFinite(value))
    throw new UsageError(`--${flag} must be a number > 0, got "${raw}"`);
  return value;
}

function origin(flag: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UsageError(`--${flag}: "${raw}" is not a URL like http://127.0.0.1:8081`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--${flag}: "${raw}" must start with http:// or https://`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new UsageError(`--${flag}: "${raw}" must be just scheme://host:port, without a path`);
  }
  return url.origin;
}

function workloadList(raw: string): WorkloadName[] {
  const names = raw
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  if (names.length === 0) throw new UsageError('--workloads must name at least one workload');
  for (const name of names) {
    if (!(WORKLOAD_NAMES as string[]).includes(name)) {
      throw new UsageError(`--workloads: unknown workload "${name}" (known: ${WORKLOAD_NAMES.join(', ')})`);
    }
  }
  return [...new Set(names)] as WorkloadName[];
}

/** The default result file name for a run started at `now`. */
export function defaultOutPath(now: Date): string {
  return `bench/results/ycsb-${now.toISOString().replace(/[:.]/g, '-')}.json`;
}

export type ParsedArgs = { help: true } | { help: false; options: BenchOptions };

/** Parses and validates argv (without node and script); throws UsageError on bad input. */
export function parseBenchArgs(
  argv: string[],
  now = new Date(),
  randomSeed = () => Math.floor(Math.random() * 2 ** 32),
): ParsedArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(
      Object.entries(FLAGS).map(([name, spec]) => [name, { type: spec.type }]),
    );
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return { help: true };

  const str = (name: keyof typeof FLAGS): string | undefined => {
    const value = values[name];
    return typeof value === 'string' ? value : undefined;
  };
  const withDefault = (name: keyof typeof FLAGS & string): string => {
    const spec: FlagSpec = FLAGS[name];
    return str(name) ?? spec.default ?? '';
  };

  const endpointsRaw = str('endpoints');
  const endpoints =
    endpointsRaw === undefined
      ? undefined
      : endpointsRaw
          .split(',')
          .filter((s) => s.trim() !== '')
          .map((s) => origin('endpoints', s));
  if (endpoints !== undefined && endpoints.length === 0) {
    throw new UsageError('--endpoints must list at least one URL');
  }
  const baselineRaw = str('baseline-endpoint');
  const baselineEndpoint = baselineRaw === undefined ? undefined : origin('baseline-endpoint', baselineRaw);
  const noBaseline = values['no-baseline'] === true;
  if (noBaseline && baselineEndpoint !== undefined) {
    throw new UsageError('--no-baseline and --baseline-endpoint contradict each other');
  }

  const compareInsecure = values['compare-insecure'] === true;
  if (compareInsecure && endpoints !== undefined)
    throw new UsageError('--compare-insecure compares two local clusters: it does not go with --endpoints');

  const bucket = withDefault('bucket');
  if (bucket === '' || bucket.includes('/'))
    throw new UsageError(`--bucket must be a non-empty name without "/"`);
  const out = str('out') ?? defaultOutPath(now);
  if (out.trim() === '') throw new UsageError('--out must be a file path');
  const seedRaw = str('seed');
  const durationRaw = str('duration');

  return {
    help: false,
    options: {
      records: integer('records', withDefault('records'), 1),
      operations: integer('operations', withDefault('operations'), 1),
      durationSec: durationRaw === undefined ? undefined : positiveNumber('duration', durationRaw),
      concurrency: integer('concurrency', withDefault('concurrency'), 1),
      valueSize: integer('value-size', withDefault('value-size'), 1),
      workloads: workloadList(withDefault('workloads')),
      nodes: integer('nodes', withDefault('nodes'), 1),
      endpoints,
      baselineEndpoint,
      baseline: !noBaseline && (endpoints === undefined || baselineEndpoint !== undefined),
      routing: values['no-routing'] !== true,
      compareInsecure,
      restart: values['no-restart'] !== true,
      lww: values['no-lww'] !== true && endpoints === undefined,
      halfLoad: values['no-half-load'] !== true,
      bucket,
      out,
      seed: seedRaw === undefined ? randomSeed() : integer('seed', seedRaw, 0),
    },
  };
}
