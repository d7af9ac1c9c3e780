/** Which replicas a read found out of date. Pure. */
import { type Clock, sameVersion } from '../version/index.js';

/** Peers whose copy (undefined = they had none) is behind the merged result of the read. */
export function staleReplicas(
  replies: Array<{ peer: string; value: Clock | undefined }>,
  merged: Clock | undefined,
): string[] {
  if (!merged) return [];
  return replies.filter(({ value }) => !value || !sameVersion(value, merged)).map(({ peer }) => peer);
}
