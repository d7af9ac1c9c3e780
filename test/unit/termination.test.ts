import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TokenMismatchError } from '../../node/src/errors.js';
import {
  TERMINATION_MESSAGE_BYTES,
  terminationMessage,
  writeTerminationMessage,
} from '../../node/src/runtime/termination.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('termination message', () => {
  it('is the typed error code and message, or error for anything else', () => {
    const mismatch = new TokenMismatchError('demo-0', '/var/lib/dynamo', 256, 16, 16);
    expect(terminationMessage(mismatch)).toBe(`token_mismatch: ${mismatch.message}`);
    expect(terminationMessage(new Error('boom'))).toBe('error: boom');
  });

  it('fits the 4096 bytes Kubernetes keeps, cut on a character boundary', () => {
    const text = terminationMessage(new Error('é'.repeat(3000)));
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(TERMINATION_MESSAGE_BYTES);
    expect(text).not.toContain('\uFFFD');
    expect(text.startsWith('error: éé')).toBe(true);
  });

  it('is written to the file, or says why it could not be', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dynamo-term-'));
    dirs.push(dir);
    expect(writeTerminationMessage(join(dir, 'log'), new Error('boom'))).toBeUndefined();
    expect(readFileSync(join(dir, 'log'), 'utf8')).toBe('error: boom');
    expect(writeTerminationMessage(join(dir, 'missing', 'log'), new Error('x'))).toMatch(/could not write/);
    expect(writeTerminationMessage('', new Error('x'))).toBeUndefined();
  });
});
