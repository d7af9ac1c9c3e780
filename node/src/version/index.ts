// Causal versioning of stored objects: dotted version vector sets (the clock and siblings of a key)
// and the opaque, checksummed context clients carry between a read and the write that follows it.
export * from './actors.js';
export * from './context.js';
export * from './dvvset.js';
export * from './expiry.js';
