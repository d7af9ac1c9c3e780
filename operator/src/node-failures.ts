// Node pods that keep failing for a reason a human must act on, from what the kubelet reports of the node's
// container: its termination message, which the node writes before it exits (`<code>: <message>`, e.g.
// `token_mismatch: ...`, `removed_member: ...`; DYNAMO_TERMINATION_MESSAGE_FILE), or the tail of its log when it
// wrote none (terminationMessagePolicy FallbackToLogsOnError: a start script that gave up). The reconciler turns
// them into the Degraded condition (status.ts) and a Warning event per pod. Pure.
import type { V1Pod } from '@kubernetes/client-node';
import { ordinalOf } from './names.js';
import { CONTAINER_NAME } from './objects/statefulset.js';

export interface NodeFailure {
  pod: string;
  /** The node's error code (`token_mismatch`, `removed_member`, ...), undefined for a log tail. */
  code?: string;
  /** The condition and event reason: TokenMismatch, RemovedMember, Decommissioned, or NodeFailing. */
  reason: string;
  /** What the node said (a log tail: its last line), cut to MESSAGE_CHARS. */
  message: string;
  restarts: number;
}

/** Reasons by node error code; any other failure is NodeFailing. */
const REASONS: Record<string, string> = {
  token_mismatch: 'TokenMismatch',
  removed_member: 'RemovedMember',
  decommissioned: 'Decommissioned',
};
const MESSAGE_CHARS = 600;
const CODED = /^([a-z][a-z_]*): ([\s\S]*)$/;

/**
 * The failing node pods of a cluster, by ordinal: a node container that is not ready, whose last exit was an
 * error with a message, and which is not running now or has restarted at least twice (a node that crashed once
 * and is starting again is not failing yet). Pods being deleted do not count.
 */
export function nodeFailures(cluster: string, pods: readonly V1Pod[]): NodeFailure[] {
  const out: Array<NodeFailure & { ordinal: number }> = [];
  for (const pod of pods) {
    const name = pod.metadata?.name ?? '';
    const ordinal = ordinalOf(cluster, name);
    if (ordinal === undefined || pod.metadata?.deletionTimestamp) continue;
    const status = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
    if (status === undefined || status.ready) continue;
    const exit = status.state?.terminated ?? status.lastState?.terminated;
    const text = exit?.message?.trim();
    if (exit === undefined || exit.exitCode === 0 || !text) continue;
    const running = status.state?.running !== undefined;
    if (running && status.restartCount < 2) continue;
    const coded = CODED.exec(text);
    const code = coded?.[1];
    const said = coded ? text : (text.split('\n').at(-1) ?? text);
    out.push({
      ordinal,
      pod: name,
      ...(code ? { code } : {}),
      reason: (code && REASONS[code]) || 'NodeFailing',
      message: said.length > MESSAGE_CHARS ? `${said.slice(0, MESSAGE_CHARS)}…` : said,
      restarts: status.restartCount,
    });
  }
  return out.sort((a, b) => a.ordinal - b.ordinal).map(({ ordinal: _, ...f }) => f);
}

/**
 * The Degraded condition failing nodes make (status.ts sets it): naming each pod and what it said, with their
 * reason when they all share one, else NodeFailing.
 */
export function failuresCondition(failures: readonly NodeFailure[]): { reason: string; message: string } {
  const reasons = new Set(failures.map((f) => f.reason));
  const reason = reasons.size === 1 ? failures[0]!.reason : 'NodeFailing';
  const message = failures
    .map((f) => `${f.pod} cannot start (restarted ${f.restarts} times): ${f.message}`)
    .join('; ');
  return { reason, message };
}

/** The Warning event for a failing node: stable across restarts, so it is recorded once per reason. */
export function failureEvent(f: NodeFailure): { type: 'Warning'; reason: string; message: string } {
  return { type: 'Warning', reason: f.reason, message: `${f.pod} cannot start: ${f.message}` };
}
