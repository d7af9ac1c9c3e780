/**
 * The Grafana dashboard shipped in the Helm chart, read as the tests see it: its panels, their PromQL
 * expressions, and those expressions with Grafana's template variables replaced so Prometheus can run them.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const DASHBOARD_PATH = resolve(import.meta.dirname, '../../charts/dynamo-kv/dashboards/dynamo.json');

export interface Target {
  refId: string;
  expr: string;
  datasource?: { type?: string; uid?: string };
}

export interface Panel {
  id: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

export interface TemplateVariable {
  name: string;
  type: string;
  query?: unknown;
  definition?: string;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: TemplateVariable[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel that shows data (rows left out, panels inside collapsed rows included). */
export function dataPanels(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]));
}

/** The rate window the tests use for Grafana's $__rate_interval (4 scrapes of 1 s would do; 15 s is safe). */
export const TEST_RATE_INTERVAL = '15s';

/**
 * The expression as Grafana would send it with every node selected: `$node` becomes `.*` (it only
 * appears in `=~` matchers) and `$__rate_interval` a fixed window. Throws on any other variable.
 */
export function substituteVariables(expr: string): string {
  const out = expr
    .replaceAll(/\$\{?__rate_interval\}?/g, TEST_RATE_INTERVAL)
    .replaceAll(/\$\{node(?::regex)?\}|\$node\b/g, '.*');
  if (out.includes('$')) throw new Error(`unknown template variable left in: ${out}`);
  return out;
}

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool']);
const PROMQL_KEYWORDS_BINARY = new Set(['and', 'or', 'unless', 'offset', 'inf', 'nan', 'atan2']);

/** Metric names an expression selects (function, aggregation and label names left out). */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replaceAll(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replaceAll(/\{[^}]*\}/g, ' ')
    .replaceAll(/\[[^\]]*\]/g, ' ')
    .replaceAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, word, call] = m;
    if (!word || call) continue; // a function or an aggregation
    if (PROMQL_KEYWORDS.has(word) || PROMQL_KEYWORDS_BINARY.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}
