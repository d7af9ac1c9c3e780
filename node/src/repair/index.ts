// Anti-entropy: per token-range Merkle trees kept current on every write, and the level-by-level
// exchange that finds which leaves (and so which keys) differ between the replicas of a range.

export * from './anti-entropy.js';
export * from './merkle.js';
