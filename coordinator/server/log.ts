/**
 * The coordinator logs through one function so tests can capture lines and the CLI can send
 * them to pino (JSON lines on stdout or in a file).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const silentLog: Log = () => {};

export interface PinoLog {
  log: Log;
  /** Flushes buffered lines (call before exiting). */
  flush(): void;
}

/** A pino-backed Log; `file` appends JSON lines there (directories are created), else stdout. */
export async function createPinoLog(options: { file?: string; level?: LogLevel; name?: string } = {}): Promise<PinoLog> {
  const { default: pino } = await import('pino');
  const destination = options.file ? pino.destination({ dest: options.file, mkdir: true, sync: false }) : pino.destination({ dest: 1, sync: false });
  const logger = pino({ name: options.name ?? 'patchfed-coordinator', level: options.level ?? 'info' }, destination);
  return {
    log: (level, msg, fields) => (fields ? logger[level](fields, msg) : logger[level](msg)),
    flush: () => {
      try {
        destination.flushSync();
      } catch {
        // nothing buffered yet (sonic-boom not ready): nothing to lose
      }
    },
  };
}
