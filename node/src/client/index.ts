/** The TypeScript client: partition-aware routing, typed errors, update with sibling resolution. */
export * from './client.js';
export * from './router.js';
