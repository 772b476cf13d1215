/**
 * MaxPool3D and MaxPool3DGrad on the native addon, with the stock cpu semantics (first strict
 * maximum forward; the gradient goes to the last maximum of each window, which matters for the
 * ties ReLU zeros create). One deliberate difference: for windows with filterHeight ≠ filterWidth
 * the stock gradient mis-encodes positions (it multiplies the row by filterHeight); the native
 * kernel routes the gradient to the true maximum.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { float32Values } from './conv3d-kernels.ts';
import type { NativeConvAddon } from './native-addon.ts';
import { inputsOf, attrsOf, type KernelArgs } from './kernel-args.ts';


/** The 17 ints the addon reads, in PoolGeometry order (src/pool3d.h). */
export function pool3dGeometry(info: tf.backend_util.Conv3DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inDepth,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterDepth,
    info.filterHeight,
    info.filterWidth,
    info.strideDepth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.front,
    info.padInfo.top,
    info.padInfo.left,
    info.outDepth,
    info.outHeight,
    info.outWidth,
  ]);
}

export function nativeMaxPool3DKernels(
  addon: NativeConvAddon,
  backendName: string,
  stock: (kernelName: string) => tf.KernelFunc,
): tf.KernelConfig[] {
  const forward = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as MathBackendCPU;
    const { x } = inputsOf(args, 'x');
    const { filterSize, strides, pad, dimRoundingMode, dataFormat } = attrsOf<tf.MaxPool3DAttrs>(args.attrs);
    const xv = float32Values(backend, x);
    if (xv === null || (dataFormat !== undefined && dataFormat !== 'NDHWC')) return stock(tf.MaxPool3D)(args) as tf.TensorInfo;
    const info = tf.backend_util.computePool3DInfo(
      x.shape as [number, number, number, number, number],
      filterSize,
      strides,
      1,
      pad,
      dimRoundingMode,
    );
    const y = new Float32Array(tf.util.sizeFromShape(info.outShape));
    addon.maxPool3d(pool3dGeometry(info), xv, y);
    return backend.makeTensorInfo(info.outShape, 'float32', y);
  };

  const gradient = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as MathBackendCPU;
    const { dy, input } = inputsOf(args, 'dy', 'input');
    const { filterSize, strides, pad, dimRoundingMode } = attrsOf<tf.MaxPool3DGradAttrs>(args.attrs);
    const dyv = float32Values(backend, dy);
    const xv = float32Values(backend, input);
    if (dyv === null || xv === null) return stock(tf.MaxPool3DGrad)(args) as tf.TensorInfo;
    const info = tf.backend_util.computePool3DInfo(
      input.shape as [number, number, number, number, number],
      filterSize,
      strides,
      1,
      pad,
      dimRoundingMode,
    );
    const dx = new Float32Array(tf.util.sizeFromShape(input.shape));
    addon.maxPool3dGrad(pool3dGeometry(info), dyv, xv, dx);
    return backend.makeTensorInfo(input.shape, 'float32', dx);
  };

  return [
    { kernelName: tf.MaxPool3D, backendName, kernelFunc: forward },
    { kernelName: tf.MaxPool3DGrad, backendName, kernelFunc: gradient },
  ];
}
