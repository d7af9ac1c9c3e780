// The operator's client for a node's HTTP admin API (GET /admin/status, /admin/ring, /metrics; POST
// /admin/decommission). Where a node is reached is a function, so tests can point at nodes on loopback.
import type { DynamoCluster } from './api-types.js';
import { defaultNodeUrl } from './names.js';
import type { NodeStatus } from './scaling.js';

/** Base URL (scheme://host:port, no trailing slash) of a node's HTTP API. */
export type NodeUrlResolver = (cluster: DynamoCluster, ordinal: number, podIP: string | undefined) => string;

export const resolveNodeUrl: NodeUrlResolver = (cluster, ordinal, podIP) =>
  defaultNodeUrl(cluster, ordinal, podIP);

export interface RingMember {
  id: string;
  state: string;
  tokenCount?: number;
  tokens?: string[];
}

export interface RingView {
  cluster?: string;
  self?: string;
  members: RingMember[];
}

export class NodeAdminError extends Error {
  constructor(
    readonly url: string,
    message: string,
  ) {
    super(`${url}: ${message}`);
  }
}

export interface NodeAdmin {
  /** POST /admin/decommission: starts the node leaving, or reports how far it got (idempotent). */
  decommission(baseUrl: string): Promise<NodeStatus>;
  status(baseUrl: string): Promise<NodeStatus>;
  /** GET /admin/ring, with every member's tokens when `tokens` is true. */
  ring(baseUrl: string, tokens?: boolean): Promise<RingView>;
  /** The node's dynamo_storage_bytes gauge, or undefined when it does not export one. */
  storageBytes(baseUrl: string): Promise<number | undefined>;
}

/** NodeAdmin over fetch, each request bounded by a timeout. */
export class HttpNodeAdmin implements NodeAdmin {
  constructor(private readonly timeoutMs = 5_000) {}

  async decommission(baseUrl: string): Promise<NodeStatus> {
    return (await this.json(`${baseUrl}/admin/decommission`, 'POST')) as NodeStatus;
  }

  async status(baseUrl: string): Promise<NodeStatus> {
    return (await this.json(`${baseUrl}/admin/status`, 'GET')) as NodeStatus;
  }

  async ring(baseUrl: string, tokens = false): Promise<RingView> {
    const view = (await this.json(`${baseUrl}/admin/ring${tokens ? '?tokens=true' : ''}`, 'GET')) as RingView;
    if (!Array.isArray(view?.members)) throw new NodeAdminError(baseUrl, 'ring view without members');
    return view;
  }

  async storageBytes(baseUrl: string): Promise<number | undefined> {
    const response = await this.fetch(`${baseUrl}/metrics`, 'GET');
    return parseGauge(await response.text(), 'dynamo_storage_bytes');
  }

  private async json(url: string, method: string): Promise<unknown> {
    const response = await this.fetch(url, method);
    return await response.json();
  }

  private async fetch(url: string, method: string): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(url, { method, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new NodeAdminError(url, err instanceof Error ? err.message : String(err));
    }
    if (!response.ok) {
      const body = await response.text().catch(() => '');
      throw new NodeAdminError(url, `HTTP ${response.status} ${body.slice(0, 200)}`);
    }
    return response;
  }
}

/** Sum of a gauge's samples (all label sets) in Prometheus text format; undefined when absent. */
export function parseGauge(text: string, name: string): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
}
