// The DynamoCluster operator: pure builders of the objects a cluster owns (objects/), pure scaling and status
// decisions (scaling.ts, status.ts; token allocation is node/src/ring/allocation.ts), and the reconcile loop that applies them (reconcile.ts, controller.ts).
export * from './api-types.js';
export { type OperatorOptions, type RunningOperator, startOperator } from './controller.js';
export { type NodeAccess, type NodeUrlResolver, resolveNodeUrl } from './node-admin.js';
export { Reconciler } from './reconcile.js';
export { validateSpec, withDefaults } from './spec.js';
