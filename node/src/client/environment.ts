/**
 * Client options from the environment `npm start` prints: DYNAMO_ENDPOINT (one node's URL), DYNAMO_TOKEN
 * (a bearer token) and DYNAMO_CA (a CA file to trust), and DYNAMO_CLIENT_CERT / DYNAMO_CLIENT_KEY (a
 * client certificate's files). Without DYNAMO_ENDPOINT, the first local node: https when a CA is given,
 * else http.
 */
import { readFileSync } from 'node:fs';
import type { DynamoClientOptions } from './client.js';

export const LOCAL_PORT = 8081;

/** The endpoint to use: DYNAMO_ENDPOINT, else the first local node. */
export function defaultEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return env.DYNAMO_ENDPOINT ?? `${env.DYNAMO_CA ? 'https' : 'http'}://127.0.0.1:${LOCAL_PORT}`;
}

/** DynamoClient options from DYNAMO_ENDPOINT, DYNAMO_TOKEN and DYNAMO_CA (read now). */
export function clientOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): DynamoClientOptions {
  return {
    seeds: [defaultEndpoint(env)],
    ...(env.DYNAMO_TOKEN ? { token: env.DYNAMO_TOKEN } : {}),
    ...(env.DYNAMO_CA ? { ca: readFileSync(env.DYNAMO_CA) } : {}),
    ...(env.DYNAMO_CLIENT_CERT ? { cert: readFileSync(env.DYNAMO_CLIENT_CERT) } : {}),
    ...(env.DYNAMO_CLIENT_KEY ? { key: readFileSync(env.DYNAMO_CLIENT_KEY) } : {}),
  };
}
