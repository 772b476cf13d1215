/**
 * tfjs kernel functions for Conv3D, Conv3DBackpropFilterV2 and Conv3DBackpropInputV2 that run
 * the native addon on the cpu backend's own Float32Arrays. Shapes and padding come from tfjs's
 * computeConv3DInfo, so 'same'/'valid' (including negative 'same' pads when stride > filter)
 * match the stock kernels exactly. Anything the addon does not cover (dilation > 1, non-float32
 * data) runs the stock cpu kernel instead.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { NativeConvAddon } from './native-addon.ts';
import { inputsOf, attrsOf, type KernelArgs } from './kernel-args.ts';

type Conv3DInfo = tf.backend_util.Conv3DInfo;

/** The 18 ints the addon reads, in ConvGeometry order (src/conv3d.h). */
export function conv3dGeometry(info: Conv3DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inDepth,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.filterDepth,
    info.filterHeight,
    info.filterWidth,
    info.outChannels,
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

/** The backend's float32 values of a tensor, or null when they are not plain float32. */
export function float32Values(backend: MathBackendCPU, t: tf.TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const values = backend.data.get(t.dataId).values;
  return values instanceof Float32Array ? values : null;
}

const isOne = (v: number | number[] | undefined): boolean =>
  v === undefined || (Array.isArray(v) ? v.every((d) => d === 1) : v === 1);

/**
 * Kernel configs for `backendName` that use the addon. `stock(kernelName)` returns the stock cpu
 * kernel function, the fallback for cases the addon does not cover.
 */
export function nativeConv3DKernels(
  addon: NativeConvAddon,
  backendName: string,
  stock: (kernelName: string) => tf.KernelFunc,
): tf.KernelConfig[] {
  const forward = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as MathBackendCPU;
    const { x, filter } = inputsOf(args, 'x', 'filter');
    const { strides, pad, dilations, dataFormat } = attrsOf<tf.Conv3DAttrs>(args.attrs);
    const xv = float32Values(backend, x);
    const wv = float32Values(backend, filter);
    if (xv === null || wv === null || !isOne(dilations) || (dataFormat !== undefined && dataFormat !== 'NDHWC')) {
      return stock(tf.Conv3D)(args) as tf.TensorInfo;
    }
    const info = tf.backend_util.computeConv3DInfo(
      x.shape as [number, number, number, number, number],
      filter.shape as [number, number, number, number, number],
      strides,
      dilations,
      pad,
    );
    const y = new Float32Array(tf.util.sizeFromShape(info.outShape));
    addon.conv3dForward(conv3dGeometry(info), xv, wv, y);
    return backend.makeTensorInfo(info.outShape, 'float32', y);
  };

  const backpropFilter = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as MathBackendCPU;
    const { x, dy } = inputsOf(args, 'x', 'dy');
    const { strides, pad, filterShape } = attrsOf<tf.Conv3DBackpropFilterV2Attrs>(args.attrs);
    const xv = float32Values(backend, x);
    const dyv = float32Values(backend, dy);
    if (xv === null || dyv === null) return stock(tf.Conv3DBackpropFilterV2)(args) as tf.TensorInfo;
    const info = tf.backend_util.computeConv3DInfo(
      x.shape as [number, number, number, number, number],
      filterShape,
      strides,
      1,
      pad,
    );
    const dw = new Float32Array(tf.util.sizeFromShape(info.filterShape));
    addon.conv3dBackpropFilter(conv3dGeometry(info), xv, dyv, dw);
    return backend.makeTensorInfo(info.filterShape, 'float32', dw);
  };

  const backpropInput = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as MathBackendCPU;
    const { dy, filter } = inputsOf(args, 'dy', 'filter');
    const { strides, pad, inputShape } = attrsOf<tf.Conv3DBackpropInputV2Attrs>(args.attrs);
    const dyv = float32Values(backend, dy);
    const wv = float32Values(backend, filter);
    if (dyv === null || wv === null) return stock(tf.Conv3DBackpropInputV2)(args) as tf.TensorInfo;
    const info = tf.backend_util.computeConv3DInfo(
      inputShape,
      filter.shape as [number, number, number, number, number],
      strides,
      1,
      pad,
    );
    const dx = new Float32Array(tf.util.sizeFromShape(info.inShape));
    addon.conv3dBackpropInput(conv3dGeometry(info), dyv, wv, dx);
    return backend.makeTensorInfo(info.inShape, 'float32', dx);
  };

  return [
    { kernelName: tf.Conv3D, backendName, kernelFunc: forward },
    { kernelName: tf.Conv3DBackpropFilterV2, backendName, kernelFunc: backpropFilter },
    { kernelName: tf.Conv3DBackpropInputV2, backendName, kernelFunc: backpropInput },
  ];
}
