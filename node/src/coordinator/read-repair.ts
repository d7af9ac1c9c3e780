/** Which replicas a read found out of date. Pure. */
import { type Clock, equalHistory } from '../version/index.js';

const valueCount = (c: Clock) => c.anonymous.length + c.entries.reduce((n, e) => n + e.values.length, 0);

/** Peers whose copy (undefined = they had none) is behind the merged result of the read. */
export function staleReplicas(
  replies: Array<{ peer: string; value: Clock | undefined }>,
  merged: Clock | undefined,
): string[] {
  if (!merged) return [];
  return replies
    .filter(({ value }) => !value || !equalHistory(value, merged) || valueCount(value) !== valueCount(merged))
    .map(({ peer }) => peer);
}
