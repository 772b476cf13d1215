/**
 * Child process of dataset-decode-memory.test.ts: decodes one case of an MSD dataset and prints
 * how much the process's peak RSS rose above its RSS just before the decode. A separate process,
 * so nothing else the test runner allocates blurs the peak.
 */
import { openMsdDataset } from '../site-agent/data/index.ts';

const [dir, warmId, bigId] = process.argv.slice(2);
const ds = await openMsdDataset(dir!, { cacheMB: 1024, seed: 1 });
await ds.load(warmId!); // load every code path once, so the measurement is the decode alone
(globalThis as { gc?: () => void }).gc?.();
const rssBefore = process.memoryUsage().rss;
const peakBefore = process.resourceUsage().maxRSS * 1024;
const c = await ds.load(bigId!);
const peakAfter = process.resourceUsage().maxRSS * 1024;
const decodedBytes = c.image.byteLength + c.label.byteLength;
process.stdout.write(`${JSON.stringify({ rssBefore, peakBefore, peakAfter, decodedBytes })}\n`);
