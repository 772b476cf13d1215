/**
 * The log of a long-running PatchFed process (coordinator, site daemon): one consistent,
 * human-readable line per entry on the console, and JSON lines (pino) in the log file when one
 * is configured — both at once, so a site with `logFile` still says on the terminal what it does.
 *
 *   2025-03-01T10:15:02Z WARN  site-a: cannot reach the coordinator at https://…: connection refused; retrying in 4 s
 *
 * `format: 'json'` puts pino JSON lines on the console instead (for log collectors).
 */
import type { Writable } from 'node:stream';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'human' | 'json';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS: readonly LogFormat[] = ['human', 'json'];

export type LogFn = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface ProcessLogOptions {
  /** Shown on every console line, and pino's `name`: 'coordinator' or the site id. */
  name: string;
  level?: LogLevel;
  /** JSON lines are appended here (directories are created). */
  file?: string;
  /** Console format; default 'human'. */
  format?: LogFormat;
  /** Console stream; default process.stdout. */
  console?: Writable;
  /** Fields put on every JSON line (e.g. { site: 'site-a' }). */
  base?: Record<string, unknown>;
}

export interface ProcessLog {
  log: LogFn;
  /** Writes buffered lines out (call before exiting). */
  flush(): void;
}

const RANK: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };
/** Fields a human line leaves out: the message says it already, or they are too long to read. */
const QUIET_FIELDS = new Set(['event', 'message', 'msg', 'stack', 'sha256', 'signature', 'selected', 'accepted', 'rejected', 'deadline']);
const MAX_FIELD_CHARS = 160;

function fieldText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value.length > MAX_FIELD_CHARS ? `${value.slice(0, MAX_FIELD_CHARS)}…` : value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value instanceof Error) return value.message;
  const json = JSON.stringify(value);
  return json === undefined ? null : json.length > MAX_FIELD_CHARS ? `${json.slice(0, MAX_FIELD_CHARS)}…` : json;
}

/** One console line: UTC time (seconds), level, name, message and the informative fields. */
export function formatHumanLine(time: Date, level: LogLevel, name: string, msg: string, fields?: Record<string, unknown>): string {
  const stamp = `${time.toISOString().slice(0, 19)}Z`;
  const extras: string[] = [];
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (QUIET_FIELDS.has(key)) continue;
    const text = fieldText(value);
    if (text !== null && !msg.includes(text)) extras.push(`${key}=${/\s/.test(text) ? JSON.stringify(text) : text}`);
  }
  return `${stamp} ${level.toUpperCase().padEnd(5)} ${name}: ${msg}${extras.length > 0 ? `  (${extras.join(', ')})` : ''}\n`;
}

export async function createProcessLog(options: ProcessLogOptions): Promise<ProcessLog> {
  const { default: pino } = await import('pino');
  const level = options.level ?? 'info';
  const format = options.format ?? 'human';
  const out = options.console ?? process.stdout;
  const loggers: { log: LogFn; flush(): void }[] = [];

  const pinoTo = (dest: ReturnType<typeof pino.destination>) => {
    const logger = pino({ name: options.name, level, base: { pid: process.pid, ...options.base } }, dest);
    return {
      log: ((lvl, msg, fields) => (fields ? logger[lvl](fields, msg) : logger[lvl](msg))) as LogFn,
      flush: () => {
        try {
          dest.flushSync();
        } catch {
          // nothing buffered yet (sonic-boom not ready): nothing to lose
        }
      },
    };
  };
  if (options.file) loggers.push(pinoTo(pino.destination({ dest: options.file, mkdir: true, sync: true })));
  if (format === 'json') {
    loggers.push(pinoTo(pino.destination({ dest: 1, sync: false })));
  } else {
    loggers.push({
      log: (lvl, msg, fields) => {
        if (RANK[lvl] >= RANK[level]) out.write(formatHumanLine(new Date(), lvl, options.name, msg, fields));
      },
      flush: () => {},
    });
  }
  return {
    log: (lvl, msg, fields) => {
      for (const l of loggers) l.log(lvl, msg, fields);
    },
    flush: () => {
      for (const l of loggers) l.flush();
    },
  };
}
