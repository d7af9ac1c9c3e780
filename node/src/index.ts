/** dynamo-kv's library entry: the client, starting a node programmatically, and the typed errors. */
export {
  type BucketProps,
  DynamoClient,
  type DynamoClientOptions,
  type GetResult,
  type Quorum,
  type ReadOptions,
  type Sibling,
  type UpdateOptions,
  type Value,
  type WriteOptions,
} from './client/client.js';
export { clientOptionsFromEnv, defaultEndpoint } from './client/environment.js';
export type { RingView, Routing } from './client/router.js';
export { loadConfig, type NodeConfig, SETTINGS } from './config.js';
export * from './errors.js';
export { type RunningNode, startNode } from './node.js';
