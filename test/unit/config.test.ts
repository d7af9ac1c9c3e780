import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, SETTINGS, settingOptions, settingsTable } from '../../node/src/config.js';
import { InvalidRequestError } from '../../node/src/errors.js';

/** The InvalidRequestError loadConfig throws for these inputs; fails the test when it does not throw. */
function configError(flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv = {}) {
  try {
    loadConfig(flags, env);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).code).toBe('invalid_config');
    return err as InvalidRequestError;
  }
  throw new Error('expected loadConfig to throw');
}

describe('loadConfig', () => {
  it('uses the documented defaults when no flag or environment variable is set', () => {
    const c = loadConfig({}, {});
    expect(c).toMatchObject({
      clusterName: 'dynamo',
      httpHost: '0.0.0.0',
      httpPort: 8080,
      peerHost: '0.0.0.0',
      peerPort: 7070,
      members: '',
      clusterFile: '',
      tokens: 256,
      rack: '',
      syncWrites: false,
      maxValueBytes: 1048576,
      defaultN: 3,
      defaultR: 2,
      defaultW: 2,
      requestTimeoutMs: 10000,
      clockMaxEntries: 50,
      clockPruneAgeMs: 86400000,
      propsSyncIntervalMs: 30000,
      ttlSweepIntervalMs: 60000,
      logLevel: 'info',
    });
    for (const s of SETTINGS) {
      if (typeof s.default !== 'function') expect(c[s.key], s.key).toBe(s.default);
    }
  });

  it('derives node id, advertise addresses and data dir from the host name by default', () => {
    const c = loadConfig({}, {});
    expect(c.nodeId).toBe(hostname());
    expect(c.advertiseAddress).toBe(`${hostname()}:7070`);
    expect(c.advertiseHttp).toBe(`http://${hostname()}:8080`);
    expect(c.dataDir).toBe(resolve(`./data/${hostname()}`));
  });

  it('lets environment variables override defaults', () => {
    const c = loadConfig(
      {},
      {
        DYNAMO_CLUSTER_NAME: 'prod',
        DYNAMO_HTTP_PORT: '9000',
        DYNAMO_SYNC_WRITES: 'true',
        DYNAMO_DEFAULT_N: '5',
        DYNAMO_LOG_LEVEL: 'debug',
      },
    );
    expect(c).toMatchObject({
      clusterName: 'prod',
      httpPort: 9000,
      syncWrites: true,
      defaultN: 5,
      logLevel: 'debug',
    });
  });

  it('ignores empty environment variables', () => {
    const c = loadConfig({}, { DYNAMO_CLUSTER_NAME: '', DYNAMO_HTTP_PORT: '' });
    expect(c.clusterName).toBe('dynamo');
    expect(c.httpPort).toBe(8080);
  });

  it('lets flags override environment variables', () => {
    const c = loadConfig(
      { 'cluster-name': 'from-flag', 'http-port': '9100', 'sync-writes': 'off' },
      { DYNAMO_CLUSTER_NAME: 'from-env', DYNAMO_HTTP_PORT: '9000', DYNAMO_SYNC_WRITES: 'yes' },
    );
    expect(c.clusterName).toBe('from-flag');
    expect(c.httpPort).toBe(9100);
    expect(c.syncWrites).toBe(false);
  });

  it('treats a bare boolean flag as true', () => {
    expect(loadConfig({ 'sync-writes': true }, {}).syncWrites).toBe(true);
  });

  it('accepts every spelling of true and false for booleans', () => {
    for (const raw of ['true', '1', 'yes', 'on']) {
      expect(loadConfig({}, { DYNAMO_SYNC_WRITES: raw }).syncWrites, raw).toBe(true);
    }
    for (const raw of ['false', '0', 'no', 'off']) {
      expect(loadConfig({ 'sync-writes': raw }, {}).syncWrites, raw).toBe(false);
    }
  });

  it('derives advertise addresses and data dir from an overridden node id and ports', () => {
    const c = loadConfig({ 'node-id': 'n7' }, { DYNAMO_PEER_PORT: '7171', DYNAMO_HTTP_PORT: '8181' });
    expect(c.advertiseAddress).toBe('n7:7171');
    expect(c.advertiseHttp).toBe('http://n7:8181');
    expect(c.dataDir).toBe(resolve('./data/n7'));
  });

  it('keeps explicitly set advertise addresses and data dir instead of deriving them', () => {
    const c = loadConfig(
      { 'node-id': 'n7', advertise: 'n7.svc:7000', 'data-dir': '/var/lib/dynamo' },
      { DYNAMO_ADVERTISE_HTTP: 'http://n7.svc:80' },
    );
    expect(c.advertiseAddress).toBe('n7.svc:7000');
    expect(c.advertiseHttp).toBe('http://n7.svc:80');
    expect(c.dataDir).toBe('/var/lib/dynamo');
  });

  it('resolves a relative data dir to an absolute path', () => {
    expect(loadConfig({ 'data-dir': 'rel/dir' }, {}).dataDir).toBe(resolve('rel/dir'));
  });

  it('rejects a non-integer flag value, naming the flag', () => {
    expect(configError({ 'http-port': 'abc' }).message).toContain('--http-port');
    expect(configError({ tokens: '1.5' }).message).toContain('--tokens');
  });

  it('rejects a non-integer environment value, naming the variable', () => {
    expect(configError({}, { DYNAMO_PEER_PORT: 'abc' }).message).toContain('DYNAMO_PEER_PORT');
  });

  it('rejects integers below the minimum, naming the flag or variable', () => {
    expect(configError({ 'http-port': '-1' }).message).toContain('--http-port');
    expect(configError({}, { DYNAMO_CLOCK_PRUNE_AGE_MS: '-1' }).message).toContain(
      'DYNAMO_CLOCK_PRUNE_AGE_MS',
    );
    expect(configError({ tokens: '0' }).message).toContain('--tokens');
    expect(configError({}, { DYNAMO_DEFAULT_N: '-1' }).message).toContain('DYNAMO_DEFAULT_N');
    expect(configError({ 'props-sync-interval-ms': '99' }).message).toContain('--props-sync-interval-ms');
  });

  it('accepts integers at the minimum', () => {
    const c = loadConfig({ 'http-port': '0', tokens: '1', 'props-sync-interval-ms': '100' }, {});
    expect(c.httpPort).toBe(0);
    expect(c.tokens).toBe(1);
    expect(c.propsSyncIntervalMs).toBe(100);
  });

  it('rejects an invalid boolean, naming the flag or variable', () => {
    expect(configError({ 'sync-writes': 'maybe' }).message).toContain('--sync-writes');
    expect(configError({}, { DYNAMO_SYNC_WRITES: 'maybe' }).message).toContain('DYNAMO_SYNC_WRITES');
  });

  it('rejects an unknown log level, naming the setting', () => {
    expect(configError({ 'log-level': 'verbose' }).message).toContain('--log-level');
    expect(configError({}, { DYNAMO_LOG_LEVEL: 'loud' }).message).toContain('DYNAMO_LOG_LEVEL');
  });

  it('rejects a default read or write quorum larger than the default replica count', () => {
    expect(configError({ 'default-r': '4' }).message).toContain('--default-r');
    expect(configError({ 'default-w': '4' }).message).toContain('--default-w');
    expect(configError({ 'default-n': '1' }).message).toContain('--default-n');
    expect(loadConfig({ 'default-n': '1', 'default-r': '1', 'default-w': '1' }, {}).defaultN).toBe(1);
  });
});

describe('settings', () => {
  it('gives every setting a unique flag and an environment variable named after it', () => {
    const flags = SETTINGS.map((s) => s.flag);
    expect(new Set(flags).size).toBe(flags.length);
    for (const s of SETTINGS) {
      expect(s.env).toMatch(/^DYNAMO_[A-Z0-9_]+$/);
      expect(s.doc.length).toBeGreaterThan(0);
    }
  });

  it('declares boolean settings as parseArgs booleans and the rest as strings', () => {
    const options = settingOptions();
    expect(options['sync-writes']).toEqual({ type: 'boolean' });
    expect(options['http-port']).toEqual({ type: 'string' });
    expect(Object.keys(options)).toHaveLength(SETTINGS.length);
  });

  it('README.md carries the generated configuration table verbatim', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(settingsTable());
  });
});

describe('config bounds', () => {
  it('rejects ports above 65535 and names the environment variable of a bad log level', () => {
    expect(() => loadConfig({ 'http-port': '65536' }, {})).toThrow(
      /--http-port: expected an integer from 0 to 65535/,
    );
    expect(() => loadConfig({}, { DYNAMO_PEER_PORT: '70000' })).toThrow(/DYNAMO_PEER_PORT/);
    expect(() => loadConfig({}, { DYNAMO_LOG_LEVEL: 'loud' })).toThrow(
      /DYNAMO_LOG_LEVEL: unknown level "loud"/,
    );
  });
});
