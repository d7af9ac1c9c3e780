/**
 * The chart ships the CRD in its crds/ directory (Helm installs it before the templates); the one source is
 * crds/ at the repository root, so the chart's copy must stay byte-for-byte identical to it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR, REPO_ROOT } from './render.js';

const CRD_FILE = 'dynamokv.io_dynamoclusters.yaml';
const SOURCE = resolve(REPO_ROOT, 'crds', CRD_FILE);
const CHART_COPY = resolve(CHART_DIR, 'crds', CRD_FILE);
const SYNC = `cp crds/${CRD_FILE} charts/dynamo-kv/crds/${CRD_FILE}`;

describe('the CRD in the Helm chart', () => {
  it('has its source at crds/ in the repository', () => {
    expect(existsSync(SOURCE), `${SOURCE} is missing`).toBe(true);
  });

  it('is a byte-for-byte copy of the one in crds/', () => {
    expect(existsSync(CHART_COPY), `the chart has no copy of the CRD; run: ${SYNC}`).toBe(true);
    const same = readFileSync(CHART_COPY).equals(readFileSync(SOURCE));
    expect(same, `charts/dynamo-kv/crds/${CRD_FILE} differs from crds/${CRD_FILE}; run: ${SYNC}`).toBe(true);
  });

  it('holds no CRD that crds/ does not have', () => {
    const shipped = existsSync(resolve(CHART_DIR, 'crds')) ? readdirSync(resolve(CHART_DIR, 'crds')) : [];
    const sources = new Set(
      existsSync(resolve(REPO_ROOT, 'crds')) ? readdirSync(resolve(REPO_ROOT, 'crds')) : [],
    );
    for (const file of shipped)
      expect(sources.has(file), `charts/dynamo-kv/crds/${file} has no source in crds/; remove it`).toBe(true);
  });
});
