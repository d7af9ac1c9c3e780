// Structured JSON logs, one line per event, in the same shape as the node's (ISO time, level name).
import { type Logger, pino } from 'pino';

export function operatorLogger(level = process.env.DYNAMO_OPERATOR_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { component: 'dynamo-operator' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
