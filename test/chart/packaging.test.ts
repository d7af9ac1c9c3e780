/**
 * The packaging around the chart that cannot run here (no Docker engine): the image build's inputs stay in
 * step with the TypeScript build, and the shell scripts parse (and pass shellcheck where it is installed).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ensureTools } from '../support/system-tools.js';
import { REPO_ROOT } from './render.js';

const run = promisify(execFile);
const read = (path: string) => readFileSync(resolve(REPO_ROOT, path), 'utf8');
const SCRIPTS = [
  'hack/install-helm.sh',
  'hack/kind-e2e.sh',
  'hack/install-deps.sh',
  'hack/install-prometheus.sh',
  'hack/install-test-tools.sh',
  'hack/k8s-control-plane.sh',
  'hack/k8s/pin.sh',
  'hack/local-k8s.sh',
];

/** Top-level folders `npm run build` compiles (tsconfig.build.json's include). */
function buildInputs(): string[] {
  const config = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
  return [...new Set(config.include.map((p) => p.split('/')[0]!))];
}

describe('the image build', () => {
  const dockerfile = read('Dockerfile');
  const ignored = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('copies every folder the TypeScript build compiles, and the build context keeps them', () => {
    for (const folder of buildInputs()) {
      expect(dockerfile, `Dockerfile must COPY ${folder}`).toMatch(
        new RegExp(`^COPY ${folder} \\./${folder}$`, 'm'),
      );
      expect(ignored, `.dockerignore must not exclude ${folder}`).not.toContain(folder);
    }
    for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'])
      expect(ignored, `.dockerignore must not exclude ${file}`).not.toContain(file);
  });

  it('keeps node_modules, dist, data and .git out of the build context', () => {
    for (const entry of ['node_modules', 'dist', 'data', '.git']) expect(ignored).toContain(entry);
  });

  it('installs without dependency scripts, prunes dev dependencies, and runs as a non-root user', () => {
    expect(dockerfile).toMatch(/npm ci --ignore-scripts/);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(runtime).toMatch(/^USER 65532:65532$/m);
    expect(runtime).toMatch(/DYNAMO_DATA_DIR=\/var\/lib\/dynamo/);
    expect(runtime).toMatch(/^VOLUME \["\/var\/lib\/dynamo"\]$/m);
    // The operator's StatefulSet starts nodes with `sh -c`, so the runtime image needs a shell.
    expect(runtime).toMatch(/^FROM \$\{NODE_IMAGE\} AS runtime$/m);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
  });
});

describe('the chart scripts', () => {
  it.each(SCRIPTS)('%s is valid bash', async (script) => {
    await expect(run('bash', ['-n', resolve(REPO_ROOT, script)])).resolves.toBeDefined();
  });

  it.each(SCRIPTS)('%s passes shellcheck', async (script) => {
    ensureTools(['shellcheck'], 'install-test-tools.sh');
    const result = await run('shellcheck', [resolve(REPO_ROOT, script)]).catch((e) => e);
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');
  });
});
