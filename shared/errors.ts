/**
 * One error type for everything a user can cause: bad files, bad configs, hostile messages.
 * `code` is stable and machine-readable; `message` names the thing and the reason.
 * The CLI prints `message` (never a stack trace) for these; anything else is a bug.
 */
export class PatchFedError extends Error {
  readonly code: string;
  /** The file, case, site or message the error is about, when there is one. */
  readonly subject?: string;

  constructor(code: string, message: string, options?: { subject?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'PatchFedError';
    this.code = code;
    this.subject = options?.subject;
  }
}

export function isPatchFedError(e: unknown): e is PatchFedError {
  return e instanceof PatchFedError;
}

/** Message of any thrown value, for logs and event records. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
