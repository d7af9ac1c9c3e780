import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../bench/random.js';
import {
  keyName,
  loadOperations,
  OperationChooser,
  ValueSource,
  WORKLOADS,
  workloadOperations,
} from '../../bench/workload.js';

describe('workload mix', () => {
  for (const spec of Object.values(WORKLOADS)) {
    it(`workload ${spec.name} issues reads and updates in its proportions (${spec.description})`, () => {
      const chooser = new OperationChooser(spec, new SeededRandom(21));
      const samples = 100_000;
      let reads = 0;
      for (let i = 0; i < samples; i++) if (chooser.next() === 'read') reads += 1;
      expect(Math.abs(reads / samples - spec.readProportion)).toBeLessThan(0.01);
    });
  }

  it('workload operations read loaded keys and write values of the configured size', () => {
    const records = 1_000;
    const loaded = new Set(Array.from({ length: records }, (_, i) => keyName(i)));
    const values = new ValueSource(512, new SeededRandom(1));
    const next = workloadOperations(WORKLOADS.a, records, new SeededRandom(2), values);
    let updates = 0;
    for (let i = 0; i < 10_000; i++) {
      const op = next();
      expect(loaded.has(op.key)).toBe(true);
      if (op.type === 'update') {
        updates += 1;
        expect(op.value?.length).toBe(512);
      } else {
        expect(op.type).toBe('read');
        expect(op.value).toBeUndefined();
      }
    }
    expect(Math.abs(updates / 10_000 - 0.5)).toBeLessThan(0.03);
  });

  it('the load phase inserts record i as the i-th operation', () => {
    const next = loadOperations(new ValueSource(100, new SeededRandom(3)));
    expect(next(7)).toMatchObject({ type: 'insert', key: keyName(7) });
    expect(next(7).value?.length).toBe(100);
  });
});

describe('ValueSource', () => {
  it('produces printable values that differ between calls', () => {
    const values = new ValueSource(1024, new SeededRandom(4));
    const a = values.next();
    const b = values.next();
    expect(a.length).toBe(1024);
    expect(a.equals(b)).toBe(false);
    for (const byte of a) {
      expect(byte).toBeGreaterThanOrEqual(32);
      expect(byte).toBeLessThan(127);
    }
  });
});
