/**
 * Why a node could not start, written where its supervisor shows it: Kubernetes reads a container's
 * termination message from /dev/termination-log (--termination-message-file) and puts it in the pod's
 * status (lastState.terminated.message), where the operator finds it and reports it in the cluster's
 * status. The format is `<code>: <message>`, the code of the typed error (e.g. `token_mismatch`,
 * `removed_member`, `decommissioned`), or `error` for anything else.
 */
import { writeFileSync } from 'node:fs';
import { DynamoError } from '../errors.js';

/** Kubernetes keeps at most 4096 bytes of a termination message. */
export const TERMINATION_MESSAGE_BYTES = 4096;

/** `<code>: <message>` of err, cut to TERMINATION_MESSAGE_BYTES. */
export function terminationMessage(err: unknown): string {
  const code = err instanceof DynamoError ? err.code : 'error';
  const text = `${code}: ${err instanceof Error ? err.message : String(err)}`;
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= TERMINATION_MESSAGE_BYTES) return text;
  // Cut on a character boundary: a decoder drops a partial last character.
  return new TextDecoder().decode(bytes.subarray(0, TERMINATION_MESSAGE_BYTES)).replace(/\uFFFD$/, '');
}

/**
 * Writes err's termination message to file (nothing when file is empty); returns why it could not, if
 * it could not (the process is exiting anyway: the caller just says so).
 */
export function writeTerminationMessage(file: string, err: unknown): string | undefined {
  if (!file) return undefined;
  try {
    writeFileSync(file, terminationMessage(err));
    return undefined;
  } catch (e) {
    return `could not write the termination message to ${file}: ${(e as Error).message}`;
  }
}
