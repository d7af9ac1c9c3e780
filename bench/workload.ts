/**
 * The YCSB core workloads the benchmark runs and the operations they issue: which operation comes next,
 * which key it touches (scrambled zipfian, as YCSB's requestdistribution=zipfian) and the value it writes.
 * Pure given a random source; the HTTP side lives in runner.ts.
 */
import type { SeededRandom, UniformSource } from './random.js';
import { fnvhash64, ScrambledZipfianGenerator } from './zipfian.js';

export type OperationType = 'read' | 'update' | 'insert';
export type WorkloadName = 'a' | 'b' | 'c';

/** One YCSB core workload: the share of reads and updates. */
export interface WorkloadSpec {
  name: WorkloadName;
  description: string;
  readProportion: number;
  updateProportion: number;
}

export const WORKLOADS: Record<WorkloadName, WorkloadSpec> = {
  a: {
    name: 'a',
    description: 'update heavy (50% read, 50% update)',
    readProportion: 0.5,
    updateProportion: 0.5,
  },
  b: {
    name: 'b',
    description: 'read mostly (95% read, 5% update)',
    readProportion: 0.95,
    updateProportion: 0.05,
  },
  c: { name: 'c', description: 'read only (100% read)', readProportion: 1, updateProportion: 0 },
};

export const WORKLOAD_NAMES = Object.keys(WORKLOADS) as WorkloadName[];

/** An operation to send: a write carries its value. */
export interface Operation {
  type: OperationType;
  key: string;
  value?: Buffer;
}

/** YCSB's key for record number n with the default insertorder=hashed: "user" + fnvhash64(n). */
export function keyName(keynum: number): string {
  return `user${fnvhash64(keynum)}`;
}

/** Picks read or update with the workload's proportions (YCSB's DiscreteGenerator over two choices). */
export class OperationChooser {
  private readonly readShare: number;

  constructor(
    spec: WorkloadSpec,
    private readonly random: UniformSource,
  ) {
    const total = spec.readProportion + spec.updateProportion;
    if (!(total > 0)) throw new RangeError(`workload ${spec.name} has no operations`);
    this.readShare = spec.readProportion / total;
  }

  next(): 'read' | 'update' {
    return this.random.nextDouble() < this.readShare ? 'read' : 'update';
  }
}

/** Random values of a fixed size, cut from one pre-filled printable-ASCII pool so making them costs nothing. */
export class ValueSource {
  private readonly pool: Buffer;

  constructor(
    readonly size: number,
    private readonly random: SeededRandom,
    poolExtra = 64 * 1024,
  ) {
    this.pool = Buffer.allocUnsafe(size + poolExtra);
    for (let i = 0; i < this.pool.length; i++) this.pool[i] = 32 + (random.nextUint32() % 95);
  }

  next(): Buffer {
    const start = this.random.nextInt(this.pool.length - this.size + 1);
    return this.pool.subarray(start, start + this.size);
  }
}

/** The load phase: inserts record i for the i-th operation (i < records). */
export function loadOperations(values: ValueSource): (index: number) => Operation {
  return (index) => ({ type: 'insert', key: keyName(index), value: values.next() });
}

/** The run phase of a workload: mixed reads and updates on zipfian-chosen loaded records. */
export function workloadOperations(
  spec: WorkloadSpec,
  records: number,
  random: UniformSource,
  values: ValueSource,
): () => Operation {
  const chooser = new OperationChooser(spec, random);
  const keys = new ScrambledZipfianGenerator(0, records - 1, random);
  return () => {
    const type = chooser.next();
    const key = keyName(keys.next());
    return type === 'read' ? { type, key } : { type, key, value: values.next() };
  };
}
