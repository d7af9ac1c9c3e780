// The consistent-hashing ring: key and token hashing, preference lists and ownership shares.
// Pure and synchronous; a membership change builds a new Ring rather than mutating one.
export * from './ring.js';
