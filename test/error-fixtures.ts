/** What a test asserts about a refusal: the PatchFedError a call throws, or its code. */
import { isPatchFedError, type PatchFedError } from '../shared/errors.ts';

/** The PatchFedError `fn` throws; any other error is rethrown, and not throwing fails the test. */
export function patchFedErrorOf(fn: () => unknown): PatchFedError {
  try {
    fn();
  } catch (e) {
    if (isPatchFedError(e)) return e;
    throw e;
  }
  throw new Error('expected a PatchFedError');
}

/** The code of the PatchFedError `fn` throws (see patchFedErrorOf). */
export function patchFedErrorCodeOf(fn: () => unknown): string {
  return patchFedErrorOf(fn).code;
}
