/** dynamo-kv's library entry: start a node programmatically, and the types and errors it uses. */

export { loadConfig, type NodeConfig, SETTINGS } from './config.js';
export * from './errors.js';
export { type RunningNode, startNode } from './node.js';
