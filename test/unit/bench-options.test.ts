import { describe, expect, it } from 'vitest';
import { defaultOutPath, helpText, parseBenchArgs, UsageError } from '../../bench/options.js';

const now = new Date('2025-01-02T03:04:05.678Z');
const parse = (...argv: string[]) => {
  const parsed = parseBenchArgs(argv, now, () => 99);
  if (parsed.help) throw new Error('unexpected --help');
  return parsed.options;
};

describe('bench options', () => {
  it('defaults to a local 3-node cluster, a baseline and workloads a,b,c', () => {
    expect(parse()).toEqual({
      records: 100_000,
      operations: 100_000,
      durationSec: undefined,
      concurrency: 32,
      valueSize: 1024,
      workloads: ['a', 'b', 'c'],
      nodes: 3,
      endpoints: undefined,
      baselineEndpoint: undefined,
      baseline: true,
      routing: true,
      compareInsecure: false,
      restart: true,
      lww: true,
      halfLoad: true,
      bucket: 'ycsb',
      out: 'bench/results/ycsb-2025-01-02T03-04-05-678Z.json',
      seed: 99,
    });
    expect(parse('--no-routing').routing).toBe(false);
    expect(parse('--compare-insecure').compareInsecure).toBe(true);
    expect(parse('--no-restart').restart).toBe(false);
    expect(parse('--no-lww').lww).toBe(false);
    expect(parse('--endpoints', 'http://h:1').lww).toBe(false);
    expect(parse('--no-half-load').halfLoad).toBe(false);
    expect(defaultOutPath(now)).toBe('bench/results/ycsb-2025-01-02T03-04-05-678Z.json');
  });

  it('parses every flag', () => {
    const o = parse(
      '--records=2000',
      '--operations',
      '4000',
      '--duration',
      '1.5',
      '--concurrency',
      '8',
      '--value-size',
      '100',
      '--workloads',
      'C,a',
      '--bucket',
      'b1',
      '--out',
      '/tmp/x.json',
      '--seed',
      '7',
      '--no-baseline',
    );
    expect(o).toMatchObject({
      records: 2000,
      operations: 4000,
      durationSec: 1.5,
      concurrency: 8,
      valueSize: 100,
      workloads: ['c', 'a'],
      bucket: 'b1',
      out: '/tmp/x.json',
      seed: 7,
      baseline: false,
    });
  });

  it('with --endpoints runs no baseline unless --baseline-endpoint is given', () => {
    const external = parse('--endpoints', 'http://10.0.0.1:8080/, http://10.0.0.2:8080');
    expect(external.endpoints).toEqual(['http://10.0.0.1:8080', 'http://10.0.0.2:8080']);
    expect(external.baseline).toBe(false);
    const withBaseline = parse('--endpoints', 'http://a:1', '--baseline-endpoint', 'http://b:2');
    expect(withBaseline.baseline).toBe(true);
    expect(withBaseline.baselineEndpoint).toBe('http://b:2');
  });

  it.each([
    [['--records', '0']],
    [['--records', 'abc']],
    [['--concurrency', '-1']],
    [['--operations', '1.5']],
    [['--duration', '0']],
    [['--workloads', 'a,z']],
    [['--workloads', ',']],
    [['--endpoints', 'localhost:8080']],
    [['--endpoints', 'http://h:1/path']],
    [['--no-baseline', '--baseline-endpoint', 'http://h:1']],
    [['--compare-insecure', '--endpoints', 'http://h:1']],
    [['--bogus']],
    [['positional']],
    [['--records']],
  ])('rejects %j with a UsageError', (argv) => {
    expect(() => parseBenchArgs(argv, now)).toThrow(UsageError);
  });

  it('--help lists every flag with its default', () => {
    expect(parseBenchArgs(['--help'], now)).toEqual({ help: true });
    const text = helpText();
    for (const flag of [
      '--records N',
      '--operations N',
      '--duration SECONDS',
      '--concurrency N',
      '--value-size BYTES',
      '--workloads LIST',
      '--endpoints URLS',
      '--baseline-endpoint URL',
      '--no-baseline',
      '--bucket NAME',
      '--out FILE',
      '--seed N',
    ]) {
      expect(text).toContain(flag);
    }
    expect(text).toContain('(default: 32)');
    expect(text).toContain('(default: 1024)');
  });
});
