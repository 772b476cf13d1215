/**
 * Child process of hardening-nifti-memory.test.ts: reads (`read`) or inspects (`inspect`) one
 * NIfTI file under a memory budget and prints the outcome and how far the process's peak RSS rose
 * above its RSS just before — in a process of its own, so nothing the test runner holds blurs it.
 *   node --import tsx test/hardening-nifti-memory-child.ts <read|inspect> <warm.nii.gz> <file> <budgetMB>
 */
import { isPatchFedError } from '../shared/errors.ts';
import { inspectNiftiFile, readNifti } from '../shared/nifti/index.ts';

const [mode, warm, file, budget] = process.argv.slice(2);
if ((mode !== 'read' && mode !== 'inspect') || !warm || !file || !budget) throw new Error('usage: <read|inspect> <warm> <file> <budgetMB>');
const opts = { maxMemoryBytes: Number(budget) * 2 ** 20 };
const run = (path: string) => (mode === 'read' ? readNifti(path, opts) : inspectNiftiFile(path, opts));
await run(warm); // every code path loaded once: the measurement is the read alone
(globalThis as { gc?: () => void }).gc?.();
const rssBefore = process.memoryUsage().rss;
let outcome: Record<string, unknown>;
try {
  const r = await run(file);
  outcome = { ok: true, stats: 'stats' in r ? r.stats : null };
} catch (e) {
  outcome = { ok: false, code: isPatchFedError(e) ? e.code : 'not-a-patchfed-error', message: e instanceof Error ? e.message : String(e) };
}
const peakAfter = process.resourceUsage().maxRSS * 1024;
process.stdout.write(`${JSON.stringify({ ...outcome, rssBefore, peakAfter })}\n`);
