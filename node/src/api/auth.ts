/**
 * Client authentication on the HTTP API: bearer tokens, each with a role. Roles are ordered, each
 * allowing what the one before allows: `read` (GET of keys, props, ring and status), `write` (PUT,
 * POST and DELETE of keys), `admin` (bucket props, decommission, member removal, cleanup).
 *
 * Tokens come from a file (--auth-tokens-file, e.g. a mounted Kubernetes Secret), one `<role> <token>`
 * per line, `#` comments; the file is read again when it changes (runtime/watched-files.ts), so tokens
 * rotate without a restart.
 * With HTTPS and --http-client-ca, a client certificate of that CA whose subject OU names a role
 * authenticates instead of a token. /health, /ready and /metrics stay open (probes and scrapers).
 */
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { ForbiddenError, InvalidRequestError, UnauthenticatedError } from '../errors.js';
import { WatchedFiles } from '../runtime/watched-files.js';

export type Role = 'read' | 'write' | 'admin';
const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };
const MIN_TOKEN_CHARS = 16;

const digest = (token: string) => createHash('sha256').update(token).digest('hex');

/** Parses a tokens file; throws InvalidRequestError naming the bad line. */
export function parseTokens(text: string, source: string): Map<string, Role> {
  const roles = new Map<string, Role>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [role, token, extra] = line.split(/\s+/);
    const bad = (why: string) =>
      new InvalidRequestError('invalid_config', `${source}, line ${i + 1}: ${why}`);
    if (!role || !(role in RANK)) throw bad('expected "<read|write|admin> <token>"');
    if (!token || extra !== undefined) throw bad('expected one token after the role');
    if (token.length < MIN_TOKEN_CHARS) throw bad(`tokens must be at least ${MIN_TOKEN_CHARS} characters`);
    roles.set(digest(token), role as Role);
  });
  if (roles.size === 0) throw new InvalidRequestError('invalid_config', `${source}: no tokens`);
  return roles;
}

export class Authenticator {
  private roles!: Map<string, Role>;
  private readonly file: WatchedFiles<'tokens'>;

  constructor(path: string, log: Logger) {
    this.file = new WatchedFiles(
      { tokens: path },
      ({ tokens }) => {
        this.roles = parseTokens(tokens.toString('utf8'), path);
      },
      (err) => log.error({ err: err.message }, 'auth tokens file unusable; keeping the previous tokens'),
      '--auth-tokens-file',
    );
    this.file.onChange(() => log.info({ tokens: this.roles.size }, 'auth tokens reloaded'));
  }

  /**
   * Throws UnauthenticatedError or ForbiddenError unless the Authorization header, or else the role of
   * a verified client certificate (certificateRole), grants needed.
   */
  check(header: string | undefined, needed: Role, certRole?: Role): Role {
    let role: Role | undefined;
    let by = 'token';
    if (header !== undefined) {
      const match = /^Bearer ([!-~]+)$/.exec(header);
      if (!match) throw new UnauthenticatedError();
      role = this.roles.get(digest(match[1]!));
      if (!role) throw new UnauthenticatedError('unknown token');
    } else if (certRole !== undefined) {
      role = certRole;
      by = 'client certificate';
    } else throw new UnauthenticatedError();
    if (RANK[role] < RANK[needed])
      throw new ForbiddenError(`this needs the ${needed} role; the ${by} has ${role}`);
    return role;
  }

  close(): void {
    this.file.close();
  }
}

/**
 * The role a verified client certificate grants (its subject OU: read, write or admin), or undefined
 * for a plain connection, an unverified or absent certificate, or another OU.
 */
export function certificateRole(socket: unknown): Role | undefined {
  const tls = socket as Partial<TLSSocket>;
  if (tls.authorized !== true || typeof tls.getPeerCertificate !== 'function') return undefined;
  const ou = tls.getPeerCertificate().subject?.OU;
  const unit = Array.isArray(ou) ? ou[0] : ou;
  return typeof unit === 'string' && unit in RANK ? (unit as Role) : undefined;
}

/** The role a request needs, or undefined for the open endpoints (/health, /ready, /metrics). */
export function neededRole(method: string, parts: string[]): Role | undefined {
  const reading = method === 'GET' || method === 'HEAD';
  if (parts[0] === 'buckets') {
    if (parts[2] === 'props') return reading ? 'read' : 'admin';
    return reading ? 'read' : 'write';
  }
  if (parts[0] === 'admin') return reading ? 'read' : 'admin';
  return undefined;
}
