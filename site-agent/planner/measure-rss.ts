/**
 * Peak process memory around a piece of work, from the kernel's own accounting: the resident
 * set before, and the high-water mark (VmHWM) during it, after resetting the mark by writing 5
 * to /proc/self/clear_refs (Linux ≥ 4.0). This sees what tf.profile cannot: memory a backend
 * holds outside tfjs tensors — TensorFlow's C++ tensors and its kernels' scratch buffers on the
 * 'tensorflow' backend, the native conv workspace on 'cpu-fast' — and it counts a buffer shared
 * by several tensor handles once.
 *
 * Caveat: memory the allocator freed earlier but kept (glibc keeps small and recently freed
 * chunks) is reused without raising RSS, so a warm process under-reports. Measure in a fresh
 * process started with MALLOC_MMAP_THRESHOLD_=131072 (every allocation ≥ 128 KiB is its own
 * mapping, returned to the system when freed) for numbers that track live memory.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface RssDelta {
  /** VmRSS just before the work. */
  rssBeforeBytes: number;
  /** VmHWM at its end: the largest resident set while it ran. */
  peakRssBytes: number;
  /** peak − before: what the work added at its worst moment. */
  deltaBytes: number;
}

function statusField(name: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Whether this process can measure peaks this way (Linux with a writable clear_refs). */
export function rssPeakSupported(): boolean {
  return statusField('VmRSS') !== null && resetPeak();
}

/** Runs `fn` and returns its result with the RSS delta, or a null delta where unsupported. */
export async function measureRssDelta<T>(fn: () => T | Promise<T>): Promise<{ result: T; rss: RssDelta | null }> {
  const supported = rssPeakSupported();
  const before = statusField('VmRSS');
  if (supported) resetPeak();
  const result = await fn();
  const peak = statusField('VmHWM');
  if (!supported || before === null || peak === null) return { result, rss: null };
  return { result, rss: { rssBeforeBytes: before, peakRssBytes: peak, deltaBytes: peak - before } };
}
