import { describe, expect, it } from 'vitest';
import { neededRole, parseTokens } from '../../node/src/api/auth.js';
import { InvalidRequestError } from '../../node/src/errors.js';

describe('auth rules', () => {
  it('needs read to look, write to change keys, admin to change the cluster', () => {
    const role = (method: string, path: string) => neededRole(method, path.split('/').slice(1));
    expect(role('GET', '/buckets/b/keys/k')).toBe('read');
    expect(role('HEAD', '/buckets/b/keys/k')).toBe('read');
    expect(role('PUT', '/buckets/b/keys/k')).toBe('write');
    expect(role('POST', '/buckets/b/keys/k')).toBe('write');
    expect(role('DELETE', '/buckets/b/keys/k')).toBe('write');
    expect(role('GET', '/buckets/b/props')).toBe('read');
    expect(role('PUT', '/buckets/b/props')).toBe('admin');
    expect(role('GET', '/admin/ring')).toBe('read');
    expect(role('POST', '/admin/decommission')).toBe('admin');
    expect(role('POST', '/admin/members/n1/remove')).toBe('admin');
    expect(role('POST', '/admin/cleanup')).toBe('admin');
    // Anything unknown under the guarded prefixes is guarded too (it 404s only once authorized).
    expect(role('PATCH', '/admin/whatever')).toBe('admin');
    for (const open of ['/health', '/ready', '/metrics']) expect(role('GET', open)).toBeUndefined();
  });

  it('reads a tokens file and refuses a bad one, naming the line', () => {
    const roles = parseTokens(
      '# comment\n\nadmin aaaaaaaaaaaaaaaaaaaa\n  read  bbbbbbbbbbbbbbbbbbbb  \n',
      'f',
    );
    expect([...roles.values()].sort()).toEqual(['admin', 'read']);
    for (const [text, line] of [
      ['root aaaaaaaaaaaaaaaaaaaa', 1],
      ['read short', 1],
      ['read aaaaaaaaaaaaaaaaaaaa\nwrite', 2],
      ['write aaaaaaaaaaaaaaaaaaaa extra', 1],
    ] as const) {
      expect(() => parseTokens(text, 'f')).toThrow(new RegExp(`line ${line}`));
    }
    expect(() => parseTokens('# nothing\n', 'f')).toThrow(InvalidRequestError);
  });
});
