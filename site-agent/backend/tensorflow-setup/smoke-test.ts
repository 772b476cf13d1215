/**
 * Proves a freshly built binding works, in a child process (loading TensorFlow costs ~400 MB and
 * a broken library can abort the process): the package registers the 'tensorflow' backend, the
 * binding reports TF_Version, and a Conv3D forward plus its filter gradient give the exact
 * values (each output of a 3×3×3 all-ones convolution over a 4³ all-ones volume counts its
 * in-bounds neighbours: 10³ in all; the gradient of that sum with respect to the centre tap
 * of the filter counts the output positions, 4³ = 64).
 */
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import { prepareTensorflowEnvironment } from '../tensorflow-environment.ts';
import { failureLine, type ToolRunner } from './run-tool.ts';

export interface SmokeResult {
  backend: string;
  tensorflowVersion: string;
  convSum: number;
  filterGradCentre: number;
  gpuDevice: boolean;
}

const SCRIPT = `
const tf = await import(process.argv[1]);
const ok = await tf.setBackend('tensorflow');
if (!ok) throw new Error("setBackend('tensorflow') returned false");
const b = tf.backend();
const x = tf.ones([1, 4, 4, 4, 1]);
const w = tf.ones([3, 3, 3, 1, 1]);
const convSum = tf.sum(tf.conv3d(x, w, 1, 'same')).dataSync()[0];
const g = tf.grad((f) => tf.sum(tf.conv3d(x, f, 1, 'same')))(w);
const filterGradCentre = g.dataSync()[13];
process.stdout.write(JSON.stringify({ backend: tf.getBackend(), tensorflowVersion: b.binding.TF_Version, convSum, filterGradCentre, gpuDevice: b.isUsingGpuDevice === true }) + '\\n');
`;

export function smokeTest(packageDir: string, run: ToolRunner, env: NodeJS.ProcessEnv = process.env): SmokeResult {
  const childEnv: NodeJS.ProcessEnv = { ...env };
  prepareTensorflowEnvironment(childEnv);
  const entry = pathToFileURL(path.join(packageDir, 'dist', 'index.js')).href;
  const r = run(process.execPath, ['--input-type=module', '-e', SCRIPT, entry], { env: childEnv, timeoutMs: 5 * 60_000 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  let result: SmokeResult | null = null;
  try {
    result = JSON.parse(line) as SmokeResult;
  } catch {
    result = null;
  }
  if (r.status !== 0 || result === null) {
    throw new PatchFedError('tensorflow-setup-smoke', `setup tensorflow: the built ${path.basename(packageDir)} binding does not load: ${failureLine(r)}`, { subject: packageDir });
  }
  if (result.backend !== 'tensorflow' || result.convSum !== 1000 || result.filterGradCentre !== 64 || typeof result.tensorflowVersion !== 'string') {
    throw new PatchFedError('tensorflow-setup-smoke', `setup tensorflow: the built binding loads but computes wrong values: ${line}`, { subject: packageDir });
  }
  return result;
}
