// The operator's client for a node's HTTP admin API (GET /admin/status, /admin/ring, /metrics; POST
// /admin/decommission). Where a node is reached is a function, so tests can point at nodes on loopback. With
// TLS, a node is verified against the cluster CA and must present a certificate for its pod's DNS name (the
// connection goes to the pod IP, which no certificate names); with auth, the operator sends its own admin token.
import { createHash } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { Agent, fetch, type Response } from 'undici';
import type { DynamoCluster } from './api-types.js';
import { defaultNodeUrl, type Scheme } from './names.js';
import type { NodeStatus } from './scaling.js';

/** Base URL (scheme://host:port, no trailing slash) of a node's HTTP API. */
export type NodeUrlResolver = (
  cluster: DynamoCluster,
  ordinal: number,
  podIP: string | undefined,
  scheme: Scheme,
) => string;

export const resolveNodeUrl: NodeUrlResolver = (cluster, ordinal, podIP, scheme) =>
  defaultNodeUrl(cluster, ordinal, podIP, scheme);

/** How to reach one node securely: the CA and name its certificate must have, and the bearer token. */
export interface NodeAccess {
  /** PEM CA certificate(s) the node's HTTPS certificate must chain to. */
  ca?: string;
  /** The DNS name the node's certificate must carry (checked instead of the URL's host). */
  serverName?: string;
  /** Sent as `Authorization: Bearer`. */
  token?: string;
}

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
  decommission(baseUrl: string, access?: NodeAccess): Promise<NodeStatus>;
  status(baseUrl: string, access?: NodeAccess): Promise<NodeStatus>;
  /** GET /admin/ring, with every member's tokens when `tokens` is true. */
  ring(baseUrl: string, tokens?: boolean, access?: NodeAccess): Promise<RingView>;
  /** The node's dynamo_storage_bytes gauge, or undefined when it does not export one. */
  storageBytes(baseUrl: string, access?: NodeAccess): Promise<number | undefined>;
}

/** Agents kept for TLS connections (one per CA and server name: a few per node of each cluster). */
const MAX_AGENTS = 512;

/** NodeAdmin over fetch, each request bounded by a timeout. */
export class HttpNodeAdmin implements NodeAdmin {
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly timeoutMs = 5_000) {}

  async decommission(baseUrl: string, access?: NodeAccess): Promise<NodeStatus> {
    return (await this.json(`${baseUrl}/admin/decommission`, 'POST', access)) as NodeStatus;
  }

  async status(baseUrl: string, access?: NodeAccess): Promise<NodeStatus> {
    return (await this.json(`${baseUrl}/admin/status`, 'GET', access)) as NodeStatus;
  }

  async ring(baseUrl: string, tokens = false, access?: NodeAccess): Promise<RingView> {
    const url = `${baseUrl}/admin/ring${tokens ? '?tokens=true' : ''}`;
    const view = (await this.json(url, 'GET', access)) as RingView;
    if (!Array.isArray(view?.members)) throw new NodeAdminError(baseUrl, 'ring view without members');
    return view;
  }

  async storageBytes(baseUrl: string, access?: NodeAccess): Promise<number | undefined> {
    const response = await this.fetch(`${baseUrl}/metrics`, 'GET', access);
    return parseGauge(await response.text(), 'dynamo_storage_bytes');
  }

  /** Closes the kept TLS connections. */
  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
  }

  private async json(url: string, method: string, access: NodeAccess | undefined): Promise<unknown> {
    const response = await this.fetch(url, method, access);
    return await response.json();
  }

  /**
   * The agent for https URLs: trusts only the given CA (never the system's), and checks the certificate names
   * serverName. None for plain http.
   */
  private agent(url: string, access: NodeAccess | undefined): Agent | undefined {
    if (!url.startsWith('https:')) return undefined;
    const ca = access?.ca;
    if (!ca) throw new NodeAdminError(url, 'https without the cluster CA: refusing to trust the system CAs');
    const serverName = access.serverName;
    const key = `${createHash('sha256').update(ca).digest('hex')}|${serverName ?? ''}`;
    let agent = this.agents.get(key);
    if (agent !== undefined) {
      // Most recently used last, so the oldest goes first.
      this.agents.delete(key);
      this.agents.set(key, agent);
      return agent;
    }
    agent = new Agent({
      connect: {
        ca,
        rejectUnauthorized: true,
        ...(serverName
          ? {
              servername: serverName,
              checkServerIdentity: (_host: string, cert: PeerCertificate) =>
                checkServerIdentity(serverName, cert),
            }
          : {}),
      },
      keepAliveTimeout: 30_000,
    });
    this.agents.set(key, agent);
    if (this.agents.size > MAX_AGENTS) {
      const [oldestKey, oldest] = this.agents.entries().next().value as [string, Agent];
      this.agents.delete(oldestKey);
      void oldest.close().catch(() => undefined);
    }
    return agent;
  }

  private async fetch(url: string, method: string, access: NodeAccess | undefined): Promise<Response> {
    let response: Response;
    try {
      const dispatcher = this.agent(url, access);
      response = await fetch(url, {
        method,
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: access?.token ? { authorization: `Bearer ${access.token}` } : {},
        ...(dispatcher ? { dispatcher } : {}),
      });
    } catch (err) {
      if (err instanceof NodeAdminError) throw err;
      throw new NodeAdminError(url, describeFetchError(err));
    }
    if (!response.ok) {
      const body = await response.text().catch(() => '');
      throw new NodeAdminError(url, `HTTP ${response.status} ${body.slice(0, 200)}`);
    }
    return response;
  }
}

/** A fetch failure with its cause (undici says only "fetch failed"; the cause is the TLS or socket error). */
function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause ? `${err.message}: ${cause}` : err.message;
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
