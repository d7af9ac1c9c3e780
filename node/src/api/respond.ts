/** Writing HTTP responses; the one place where errors become JSON error bodies. */
import type { ServerResponse } from 'node:http';
import { DynamoError } from '../errors.js';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end();
}

/** Turns any error into a JSON error response; unknown errors are 500 without a stack trace. Returns the status. */
export function sendError(res: ServerResponse, err: unknown, onInternal: (err: unknown) => void): number {
  if (err instanceof DynamoError) {
    sendJson(res, err.status, { error: err.code, message: err.message, ...err.details() });
    return err.status;
  }
  onInternal(err);
  sendJson(res, 500, { error: 'internal', message: 'internal error; see the node log' });
  return 500;
}
