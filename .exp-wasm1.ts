import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import path from 'node:path';
const require = createRequire(import.meta.url);
const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/';
setWasmPaths(dir);
await tf.setBackend("cpu");
const x = tf.randomNormal([1,6,6,4,2], 0, 1, 'float32', 1);
const f = tf.randomNormal([3,3,3,2,3], 0, 1, 'float32', 2);
async function run(b: string) {
  await tf.setBackend(b);
  const xx = tf.tensor(x.dataSync(), x.shape); const ff = tf.tensor(f.dataSync(), f.shape);
  const g = tf.grads((a: tf.Tensor, k: tf.Tensor) => tf.sum(tf.square(tf.conv3d(a as tf.Tensor5D, k as tf.Tensor5D, [1,1,1], 'same'))));
  const [gx, gf] = g([xx, ff]);
  return [gx.dataSync(), gf.dataSync()];
}
await tf.ready();
const c = await run('cpu');
const w = await run('wasm');
const diff = (a: any, b: any) => { let m=0,n=0; for (let i=0;i<a.length;i++){m=Math.max(m,Math.abs(a[i]-b[i])); n=Math.max(n,Math.abs(a[i]));} return m/n; };
console.log('input', diff(c[0], w[0]), 'filter', diff(c[1], w[1]));
