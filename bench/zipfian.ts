/**
 * YCSB's key choosers: ZipfianGenerator (Gray et al., "Quickly Generating Billion-Record Synthetic
 * Databases", SIGMOD 1994) and ScrambledZipfianGenerator, which hashes the zipfian item with 64-bit FNV-1a
 * so the popular items are scattered over the key space instead of clustered at the start.
 * Ported from YCSB core (site.ycsb.generator), keeping its constants so the skew matches YCSB runs.
 */
import type { UniformSource } from './random.js';

/** YCSB's default zipfian constant (theta). */
export const ZIPFIAN_CONSTANT = 0.99;

/** Item space the scrambled generator draws from before hashing (YCSB's ITEM_COUNT). */
export const SCRAMBLED_ITEM_COUNT = 10_000_000_000_000_000;

/** YCSB's precomputed zeta for the scrambled generator (it is zeta(1e10, 0.99); YCSB uses it as is). */
export const SCRAMBLED_ZETAN = 26.46902820178302;

const FNV_OFFSET_BASIS_64 = 0xcbf29ce484222325n;
const FNV_PRIME_64 = 1099511628211n;
const TWO_POW_63 = 1n << 63n;
const TWO_POW_64 = 1n << 64n;

/** YCSB's Utils.fnvhash64: FNV-1a over the 8 little-endian bytes of a long, then Math.abs of the signed result. */
export function fnvhash64(value: bigint | number): bigint {
  let rest = BigInt.asUintN(64, typeof value === 'bigint' ? value : BigInt(value));
  let hash = FNV_OFFSET_BASIS_64;
  for (let i = 0; i < 8; i++) {
    hash = BigInt.asUintN(64, (hash ^ (rest & 0xffn)) * FNV_PRIME_64);
    rest >>= 8n;
  }
  // Java's Math.abs(Long.MIN_VALUE) stays negative; taking 2^63 instead keeps the result a valid index.
  return hash >= TWO_POW_63 ? TWO_POW_64 - hash : hash;
}

/** The generalized harmonic number: sum of 1 / i^theta for i in (st, n], added to initialSum. */
export function zeta(n: number, theta: number, st = 0, initialSum = 0): number {
  let sum = initialSum;
  for (let i = st; i < n; i++) sum += 1 / (i + 1) ** theta;
  return sum;
}

/** Zipfian integers in [min, max]: min is the most popular, min + 1 the next, and so on. */
export class ZipfianGenerator {
  readonly items: number;
  readonly base: number;
  private readonly theta: number;
  private readonly zetan: number;
  private readonly alpha: number;
  private readonly eta: number;
  private readonly secondThreshold: number;

  constructor(
    min: number,
    max: number,
    private readonly random: UniformSource,
    zipfianConstant = ZIPFIAN_CONSTANT,
    zetan = zeta(max - min + 1, zipfianConstant),
  ) {
    if (!(max >= min)) throw new RangeError(`zipfian range is empty: [${min}, ${max}]`);
    this.items = max - min + 1;
    this.base = min;
    this.theta = zipfianConstant;
    this.zetan = zetan;
    this.alpha = 1 / (1 - this.theta);
    const zeta2theta = zeta(2, this.theta);
    this.eta = (1 - (2 / this.items) ** (1 - this.theta)) / (1 - zeta2theta / this.zetan);
    this.secondThreshold = 1 + 0.5 ** this.theta;
  }

  /** The next item. */
  next(): number {
    const u = this.random.nextDouble();
    const uz = u * this.zetan;
    if (uz < 1) return this.base;
    if (uz < this.secondThreshold) return this.base + 1;
    return this.base + Math.floor(this.items * (this.eta * u - this.eta + 1) ** this.alpha);
  }
}

/** Zipfian-popular integers in [min, max] with the popular ones spread over the whole range. */
export class ScrambledZipfianGenerator {
  private readonly min: number;
  private readonly itemCount: bigint;
  private readonly zipfian: ZipfianGenerator;

  constructor(min: number, max: number, random: UniformSource) {
    if (!(max >= min)) throw new RangeError(`zipfian range is empty: [${min}, ${max}]`);
    this.min = min;
    this.itemCount = BigInt(max - min + 1);
    this.zipfian = new ZipfianGenerator(0, SCRAMBLED_ITEM_COUNT, random, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN);
  }

  /** The next item. */
  next(): number {
    const item = BigInt(this.zipfian.next());
    return this.min + Number(fnvhash64(item) % this.itemCount);
  }
}
