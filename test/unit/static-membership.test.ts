import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../node/src/errors.js';
import { loadClusterFile, parseMembers, StaticMembership } from '../../node/src/membership/static.js';
import { generateTokens } from '../../node/src/ring/index.js';

/** The message of the invalid_config error fn throws; fails the test otherwise. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).code).toBe('invalid_config');
    return (err as Error).message;
  }
  throw new Error('expected an invalid_config error, nothing was thrown');
}

const token = (c: string) => c.repeat(32);

describe('parseMembers', () => {
  it('gives every member of id=host:port,... the default tokens for its id', () => {
    const members = parseMembers('a=127.0.0.1:1,b=h:2', 4);
    expect(members).toEqual([
      { id: 'a', address: '127.0.0.1:1', tokens: generateTokens('a', 4) },
      { id: 'b', address: 'h:2', tokens: generateTokens('b', 4) },
    ]);
    expect(members[0]!.tokens).toHaveLength(4);
    expect(members[0]!.tokens).not.toEqual(members[1]!.tokens);
  });

  it('ignores spaces around entries and empty entries', () => {
    expect(parseMembers(' a=h:1 , ,b=node-b.svc.cluster.local:7070,', 1).map((m) => m.address)).toEqual([
      'h:1',
      'node-b.svc.cluster.local:7070',
    ]);
    expect(parseMembers('', 8)).toEqual([]);
  });

  it('accepts bracketed IPv6 addresses', () => {
    expect(parseMembers('a=[::1]:7070', 1)[0]!.address).toBe('[::1]:7070');
  });

  it('rejects an entry without id= or with an empty id, quoting the entry', () => {
    expect(configError(() => parseMembers('a', 1))).toMatch(/"a" must be id=host:port/);
    expect(configError(() => parseMembers('=x:1', 1))).toMatch(/"=x:1" must be id=host:port/);
    expect(configError(() => parseMembers('a=h:1,b', 1))).toMatch(/"b"/);
  });

  it('rejects an address without a port, naming the member and the address', () => {
    const message = configError(() => parseMembers('a=nohostport', 1));
    expect(message).toContain('member a');
    expect(message).toContain('"nohostport" must be host:port');
    expect(configError(() => parseMembers('a=h:', 1))).toContain('must be host:port');
    expect(configError(() => parseMembers('a=h:port', 1))).toContain('must be host:port');
    expect(configError(() => parseMembers('a=h:1:2', 1))).toContain('must be host:port');
  });

  it('rejects ids with characters other than letters, digits, _ . - or not starting with a letter or digit', () => {
    for (const spec of [
      'a b=h:1',
      'a/b=h:1',
      'a:b=h:1',
      'nöde=h:1',
      '-a=h:1',
      '.a=h:1',
      `${'x'.repeat(64)}=h:1`,
    ]) {
      expect(
        configError(() => parseMembers(spec, 1)),
        spec,
      ).toMatch(/member id ".*" must be 1-63 chars/);
    }
    expect(parseMembers(`${'x'.repeat(63)}=h:1`, 1)).toHaveLength(1);
  });
});

describe('loadClusterFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dynamo-cluster-file-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const file = (content: unknown, name = 'cluster.json') => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };

  it('gives members without tokens the default count and members with a count that many tokens', () => {
    const members = loadClusterFile(
      file([
        { id: 'a', address: 'a:7070' },
        { id: 'b', address: 'b:7070', tokens: 3 },
      ]),
      5,
    );
    expect(members).toEqual([
      { id: 'a', address: 'a:7070', tokens: generateTokens('a', 5) },
      { id: 'b', address: 'b:7070', tokens: generateTokens('b', 3) },
    ]);
  });

  it('keeps explicit token lists, racks and http URLs as given', () => {
    const members = loadClusterFile(
      file([
        {
          id: 'a',
          address: 'a:7070',
          tokens: [token('0'), token('8')],
          rack: 'zone-1',
          http: 'http://a:8080',
        },
        { id: 'b', address: 'b:7070', tokens: [token('4')], rack: 'zone-2' },
      ]),
      256,
    );
    expect(members).toEqual([
      { id: 'a', address: 'a:7070', tokens: [token('0'), token('8')], rack: 'zone-1', http: 'http://a:8080' },
      { id: 'b', address: 'b:7070', tokens: [token('4')], rack: 'zone-2' },
    ]);
  });

  it('rejects a file that is not valid JSON, naming the file', () => {
    const path = file('[{"id": "a",');
    expect(configError(() => loadClusterFile(path, 1))).toContain(path);
  });

  it('rejects a file that does not exist, naming the file', () => {
    const path = join(dir, 'missing.json');
    expect(configError(() => loadClusterFile(path, 1))).toContain(path);
  });

  it('rejects a file whose JSON is not an array', () => {
    for (const content of [{ id: 'a', address: 'a:1' }, 'null', '"a=h:1"']) {
      const path = file(content);
      expect(configError(() => loadClusterFile(path, 1))).toMatch(/expected a JSON array of members/);
    }
  });

  it('rejects bad token counts and token lists, naming the member', () => {
    const bad: unknown[] = [
      0,
      -1,
      2.5,
      'abc',
      ['xyz'],
      [token('A')],
      [`${token('0')}0`],
      [token('0'), 7],
      { count: 3 },
    ];
    for (const tokens of bad) {
      const path = file([
        { id: 'ok', address: 'ok:1' },
        { id: 'b', address: 'b:1', tokens },
      ]);
      expect(
        configError(() => loadClusterFile(path, 4)),
        JSON.stringify(tokens),
      ).toMatch(/member 1 \(b\): tokens must be/);
    }
  });

  it('rejects members with a bad id or address', () => {
    expect(configError(() => loadClusterFile(file([{ address: 'a:1' }]), 1))).toMatch(/member id ""/);
    expect(configError(() => loadClusterFile(file([{ id: 'a' }]), 1))).toMatch(/member a: address ""/);
    expect(configError(() => loadClusterFile(file([{ id: 'a', address: 'a' }]), 1))).toContain(
      'must be host:port',
    );
  });

  it('rejects entries that are not objects with a clear error', () => {
    for (const entry of [null, 5, 'a=h:1', ['a', 'a:1']]) {
      const path = file([entry]);
      expect(
        configError(() => loadClusterFile(path, 1)),
        JSON.stringify(entry),
      ).toMatch(/member 0: expected an object/);
    }
  });
});

describe('StaticMembership', () => {
  const members = () => parseMembers('a=h:1,b=h:2,c=h:3', 8);

  it('serves the members, their addresses and a ring of all of them', () => {
    const m = new StaticMembership('a', 'test', members());
    expect(m.self).toBe('a');
    expect(m.cluster).toBe('test');
    expect(m.members().map((x) => x.id)).toEqual(['a', 'b', 'c']);
    expect(m.address('b')).toBe('h:2');
    expect(m.address('zz')).toBeUndefined();
    expect(m.state('c')).toBe('up');
    expect(m.state('zz')).toBe('removed');
    expect(m.ring().size).toBe(3);
  });

  it('refuses to start when this node is not in the member list', () => {
    expect(configError(() => new StaticMembership('d', 'test', members()))).toContain(
      'this node (d) is not in the member list',
    );
  });

  it('refuses duplicate member ids', () => {
    const list = parseMembers('a=h:1,b=h:2,a=h:3', 8);
    expect(configError(() => new StaticMembership('a', 'test', list))).toContain('member ids must be unique');
  });

  it('turns ring errors such as a token owned twice or no tokens into invalid_config', () => {
    const twice = [
      { id: 'a', address: 'h:1', tokens: [token('1')] },
      { id: 'b', address: 'h:2', tokens: [token('1')] },
    ];
    expect(configError(() => new StaticMembership('a', 'test', twice))).toContain('owned by both');
    const none = [{ id: 'a', address: 'h:1', tokens: [] }];
    expect(configError(() => new StaticMembership('a', 'test', none))).toContain('no tokens');
  });

  it('records the HTTP URL a member advertises', () => {
    const m = new StaticMembership('a', 'test', members());
    m.learnHttp('b', 'http://h:8080');
    m.learnHttp('zz', 'http://nowhere');
    expect(m.members().find((x) => x.id === 'b')?.http).toBe('http://h:8080');
    expect(m.members()).toHaveLength(3);
  });
});
