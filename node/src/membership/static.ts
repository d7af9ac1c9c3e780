/** Static membership: the member list and tokens come from flags or a cluster file and never change. */
import { readFileSync } from 'node:fs';
import { InvalidRequestError } from '../errors.js';
import { generateTokens, isToken, Ring } from '../ring/index.js';
import type { Member, MemberState, Membership } from './membership.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/;

const bad = (msg: string) => new InvalidRequestError('invalid_config', msg);

function checkMember(m: Member): Member {
  if (!ID.test(m.id)) throw bad(`member id "${m.id}" must be 1-63 chars of letters, digits, _ . -`);
  if (!ADDRESS.test(m.address)) throw bad(`member ${m.id}: address "${m.address}" must be host:port`);
  return m;
}

/** Parses `id=host:port,id=host:port`; every member gets tokensPerNode default tokens. */
export function parseMembers(spec: string, tokensPerNode: number): Member[] {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq <= 0) throw bad(`--members entry "${part}" must be id=host:port`);
      const id = part.slice(0, eq);
      return checkMember({ id, address: part.slice(eq + 1), tokens: generateTokens(id, tokensPerNode) });
    });
}

/** Reads a cluster file: [{ id, address, tokens?: number | string[], rack?, http? }]. */
export function loadClusterFile(path: string, tokensPerNode: number): Member[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw bad(`cluster file ${path}: ${(err as Error).message}`);
  }
  if (!Array.isArray(raw)) throw bad(`cluster file ${path}: expected a JSON array of members`);
  return raw.map((value: unknown, i) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw bad(`cluster file ${path}, member ${i}: expected an object with id and address`);
    const entry = value as Record<string, unknown>;
    const id = String(entry.id ?? '');
    const where = `cluster file ${path}, member ${i} (${id})`;
    let tokens: string[];
    if (entry.tokens === undefined || typeof entry.tokens === 'number') {
      const count = (entry.tokens as number | undefined) ?? tokensPerNode;
      if (!Number.isInteger(count) || count < 1) throw bad(`${where}: tokens must be a positive integer`);
      tokens = generateTokens(id, count);
    } else if (
      Array.isArray(entry.tokens) &&
      entry.tokens.every((t) => typeof t === 'string' && isToken(t))
    ) {
      tokens = entry.tokens as string[];
    } else throw bad(`${where}: tokens must be a count or a list of 32-hex-digit tokens`);
    const member: Member = { id, address: String(entry.address ?? ''), tokens };
    if (entry.rack !== undefined) member.rack = String(entry.rack);
    if (entry.http !== undefined) member.http = String(entry.http);
    return checkMember(member);
  });
}

export class StaticMembership implements Membership {
  private readonly byId: Map<string, Member>;
  private readonly theRing: Ring;

  constructor(
    readonly self: string,
    readonly cluster: string,
    private readonly list: Member[],
  ) {
    this.byId = new Map(list.map((m) => [m.id, m]));
    if (this.byId.size !== list.length) throw bad('member ids must be unique');
    if (!this.byId.has(self)) throw bad(`this node (${self}) is not in the member list`);
    try {
      this.theRing = new Ring(list);
    } catch (err) {
      throw bad((err as Error).message);
    }
  }

  pendingRing(): undefined {
    return undefined;
  }

  ring(): Ring {
    return this.theRing;
  }

  members(): readonly Member[] {
    return this.list;
  }

  address(id: string): string | undefined {
    return this.byId.get(id)?.address;
  }

  state(id: string): MemberState {
    return this.byId.has(id) ? 'up' : 'removed';
  }

  remove(id: string): void {
    throw new InvalidRequestError(
      'static_membership',
      `this cluster uses static membership: restart the nodes without ${id} in --members to remove it`,
    );
  }

  learnHttp(id: string, url: string): void {
    const member = this.byId.get(id);
    if (member) member.http = url;
  }
}
