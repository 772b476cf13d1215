/**
 * The CUDA side of `setup tensorflow --gpu`. The GPU build of TensorFlow on Linux (the standard
 * `tensorflow` wheel) takes CUDA 12 and cuDNN from NVIDIA's pip packages — its `and-cuda` extra
 * (`pip install tensorflow[and-cuda]`) — which install into site-packages/nvidia/<lib>/lib, and
 * its libraries carry the RUNPATH entries $ORIGIN/../nvidia/<lib>/lib that find them there.
 * We mirror that layout: the TensorFlow libraries go to deps/lib and the NVIDIA packages'
 * nvidia/ tree to deps/nvidia, so $ORIGIN/../nvidia/<lib>/lib resolves the same way; the
 * LD_LIBRARY_PATH line printed by the setup is the documented fallback.
 *
 * UNTESTED on a GPU: written from the wheels' published contract (no GPU, and neither the GPU
 * wheel nor the cu12 packages are on this machine's package index).
 */
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import type { ExtractRule } from './wheel.ts';

/**
 * The `Requires-Dist: …; extra == "and-cuda"` requirements of a TensorFlow wheel's METADATA,
 * without the marker, e.g. `nvidia-cudnn-cu12<10.0,>=9.3.0.75`.
 */
export function andCudaRequirements(metadata: string): string[] {
  const out: string[] = [];
  for (const line of metadata.split(/\r?\n/)) {
    const m = /^Requires-Dist:\s*(.+?)\s*;\s*(.+)$/.exec(line);
    if (!m) continue;
    const marker = m[2]!;
    if (/extra\s*==\s*["']and-cuda["']/.test(marker)) out.push(m[1]!.replace(/\s+/g, ''));
  }
  if (out.length === 0) {
    throw new PatchFedError('tensorflow-setup-gpu', 'setup tensorflow --gpu: the TensorFlow wheel lists no "and-cuda" requirements (CUDA/cuDNN pip packages); this TensorFlow version is not supported by --gpu', {
      subject: 'METADATA',
    });
  }
  return out;
}

/** Members of an NVIDIA wheel that go to deps/nvidia: the libraries and tools, not headers or Python files. */
export const NVIDIA_RULES: readonly ExtractRule[] = [{ from: 'nvidia/', to: 'nvidia/' }];
export const NVIDIA_EXCLUDE = '/include/|__init__\\.py$|__pycache__/|\\.pyc$';

/**
 * Library folders of the mirrored NVIDIA tree (deps/nvidia/<lib>/lib), for the LD_LIBRARY_PATH
 * fallback: `relativeLibDirs` are paths relative to deps/, as found in the extracted tree.
 */
export function ldLibraryPath(depsDir: string, relativeLibDirs: readonly string[]): string {
  return [path.join(depsDir, 'lib'), ...relativeLibDirs.map((d) => path.join(depsDir, d))].join(path.delimiter);
}
