import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { dataPanels, loadDashboard, metricNames, substituteVariables } from './dashboard.js';

const METRICS_SOURCE = resolve(import.meta.dirname, '../../node/src/metrics/metrics.ts');
const CHART = resolve(import.meta.dirname, '../../charts/dynamo-kv');

/** Names the node registers itself (read from its source) and prom-client's default metrics. */
function exportedMetricNames(): Set<string> {
  const own = [...readFileSync(METRICS_SOURCE, 'utf8').matchAll(/name: '([a-zA-Z_:][a-zA-Z0-9_:]*)'/g)];
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults });
  return new Set([...own.map((m) => m[1]!), ...defaults.getMetricsAsArray().map((m) => m.name)]);
}

/** Whether a selected name is exported, directly or as a histogram or summary series. */
function isExported(name: string, exported: Set<string>): boolean {
  return exported.has(name) || exported.has(name.replace(/_(bucket|sum|count)$/, ''));
}

/** Grafana's reference to the dashboard's datasource variable (a literal `${datasource}`). */
const DATASOURCE_VARIABLE = `\${datasource}`;

describe('the Grafana dashboard JSON', () => {
  const dashboard = loadDashboard();
  const panels = dataPanels(dashboard);
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));

  it('is a dashboard with a fixed uid, a recent schema and panels', () => {
    expect(dashboard.uid).toBe('dynamo-kv');
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(panels.length).toBeGreaterThan(0);
  });

  it('gives every panel a unique id and title and at least one query with a unique refId', () => {
    const ids = dashboard.panels.flatMap((p) => [p.id, ...(p.panels ?? []).map((c) => c.id)]);
    expect(new Set(ids).size, 'panel ids must be unique').toBe(ids.length);
    const titles = panels.map((p) => p.title);
    expect(new Set(titles).size, 'panel titles must be unique').toBe(titles.length);
    for (const p of panels) {
      expect(p.title, `panel ${p.id} has no title`).toBeTruthy();
      expect(p.targets?.length ?? 0, `panel "${p.title}" has no query`).toBeGreaterThan(0);
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, `panel "${p.title}" repeats a refId`).toBe(refIds.length);
      for (const t of p.targets ?? []) expect(t.expr.trim(), `panel "${p.title}" ${t.refId}`).not.toBe('');
    }
  });

  it('queries Prometheus through the datasource variable', () => {
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const p of panels) {
      expect(p.datasource, `panel "${p.title}"`).toEqual({ type: 'prometheus', uid: DATASOURCE_VARIABLE });
      for (const t of p.targets ?? [])
        expect(t.datasource?.uid, `panel "${p.title}"`).toBe(DATASOURCE_VARIABLE);
    }
  });

  it('offers every node, several nodes or all of them through the node variable', () => {
    const node = dashboard.templating.list.find((v) => v.name === 'node');
    expect(node).toMatchObject({
      type: 'query',
      definition: 'label_values(dynamo_requests_total, node)',
      multi: true,
      includeAll: true,
    });
  });

  it('filters every query by node with a regex matcher and rates over $__rate_interval', () => {
    for (const t of targets) {
      const where = `panel "${t.panel}" ${t.refId}: ${t.expr}`;
      expect(t.expr, where).toMatch(/node=~"\$node"/);
      // A multi-value or All selection expands to a regex, so `=` would match nothing.
      expect(t.expr.match(/\$node/g)?.length, where).toBe(t.expr.match(/=~"\$node"/g)?.length);
      for (const [, window] of t.expr.matchAll(/\[([^\]]*)\]/g))
        expect(window, where).toBe('$__rate_interval');
      expect(() => substituteVariables(t.expr), where).not.toThrow();
    }
  });

  it('selects only metrics the node exports', () => {
    const exported = exportedMetricNames();
    expect(exported.has('dynamo_requests_total')).toBe(true);
    expect(exported.has('process_resident_memory_bytes')).toBe(true);
    for (const t of targets) {
      const names = metricNames(t.expr);
      expect(names.length, `panel "${t.panel}" ${t.refId} selects no metric: ${t.expr}`).toBeGreaterThan(0);
      for (const name of names) {
        expect(isExported(name, exported), `panel "${t.panel}" uses unknown metric ${name}: ${t.expr}`).toBe(
          true,
        );
      }
    }
  });

  it('is the file the chart packs into its Grafana ConfigMap', () => {
    const template = readFileSync(resolve(CHART, 'templates/grafana-dashboard.yaml'), 'utf8');
    expect(template).toContain('.Files.Get "dashboards/dynamo.json"');
    expect(template).toMatch(/if \.Values\.grafana\.dashboard\.enabled/);
  });
});

describe('metricNames', () => {
  it('finds selected metrics and leaves out functions, aggregations, labels and keywords', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (op, le) (rate(a_bucket{node=~"$node",code!~"2..|x"}[5m]))) / on (op) group_left b or vector(0)',
      ).sort(),
    ).toEqual(['a_bucket', 'b']);
  });
});
