/**
 * Learned ×2 upsampling, mathematically identical to ConvTranspose3d(kernel 2, stride 2)
 * (tf.conv3dTranspose with a [2,2,2,Cout,Cin] filter, 'valid' padding).
 *
 * Why not tf.conv3dTranspose: its kernel (Conv3DBackpropInputV2) has no gradient in tfjs.
 * With kernel = stride = 2 the output blocks do not overlap: every input voxel v produces its
 * own 2×2×2 output block, block[a,b,c,o] = Σ_i v[i]·K[a,b,c,o,i]. That is one matMul to
 * 8·Cout channels followed by a depth-to-space rearrangement (reshape/transpose/reshape),
 * all ops with gradients, and the matMul is faster than the generic transposed conv.
 * Transposes stay at rank ≤ 6 so every backend supports them.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../../backend/gradients/index.ts';

/**
 * @param x      [N, D, H, W, Cin]
 * @param kernel [2, 2, 2, Cout, Cin] (tf.conv3dTranspose filter layout)
 * @param bias   optional [Cout]
 * @returns      [N, 2D, 2H, 2W, Cout]
 */
export function learnedUpsample2x(x: tf.Tensor5D, kernel: tf.Tensor5D, bias?: tf.Tensor1D): tf.Tensor5D {
  const [n, d, h, w, cin] = x.shape;
  const [kd, kh, kw, cout, kcin] = kernel.shape;
  if (kd !== 2 || kh !== 2 || kw !== 2 || kcin !== cin) {
    throw new Error(`learnedUpsample2x: kernel [${kernel.shape}] does not fit input [${x.shape}]; expected [2,2,2,Cout,${cin}]`);
  }
  return tf.tidy(() => {
    // [Cin, (a,b,c,o)]: column ((a·2+b)·2+c)·Cout+o holds K[a,b,c,o,:].
    const weight = tf.reshape(tf.transpose(kernel, [4, 0, 1, 2, 3]), [cin, 8 * cout]);
    const blocks = tf.matMul(tf.reshape(x, [n * d * h * w, cin]), weight);
    // [(n,d), h, w, a, b, (c,o)] → [(n,d), a, h, b, w, (c,o)] → [n, 2d, 2h, 2w, o].
    const grouped = tf.reshape(blocks, [n * d, h, w, 2, 2, 2 * cout]);
    const interleaved = tf.transpose(grouped, [0, 3, 1, 4, 2, 5]);
    const y = tf.reshape(interleaved, [n, 2 * d, 2 * h, 2 * w, cout]) as tf.Tensor5D;
    return bias === undefined ? y : (tf.add(y, bias) as tf.Tensor5D);
  });
}
