/**
 * Native versions of the float32 kernels that dominate a U-Net training step once the
 * convolutions are fast: the stock cpu backend runs broadcasting binary ops, reductions over
 * leading axes, non-contiguous slices/splits, transposes and softmax through per-element index
 * arithmetic (tens of ns per element), unary ops through a per-element callback, and matmul
 * (the learned upsampling) as plain JS loops. Cases outside the native paths (other dtypes, empty
 * tensors, non-contiguous reduction axes, contiguous slices that the stock kernel serves as a
 * zero-copy view) run the stock cpu kernel.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { float32Values } from './conv3d-kernels.ts';
import type { NativeConvAddon } from './native-addon.ts';
import { inputsOf, inputList, attrsOf, type KernelArgs } from './kernel-args.ts';

type Stock = (kernelName: string) => tf.KernelFunc;

const size = (shape: readonly number[]) => tf.util.sizeFromShape(shape as number[]);
const product = (shape: readonly number[], from: number, to: number) => shape.slice(from, to).reduce((p, d) => p * d, 1);

/** [outer, reduce, inner] when the (normalised) axes form one contiguous block, else null. */
export function contiguousAxes(shape: readonly number[], axes: readonly number[]): [number, number, number] | null {
  if (axes.length === 0) return null;
  const sorted = [...axes].sort((p, q) => p - q);
  for (let i = 1; i < sorted.length; i++) if (sorted[i] !== sorted[0]! + i) return null;
  const first = sorted[0]!;
  const last = sorted[sorted.length - 1]! + 1;
  return [product(shape, 0, first), product(shape, first, last), product(shape, last, shape.length)];
}

// Each factory returns one kernelFunc; inputs outside its native path run stock(kernelName).

const binaryKernel = (addon: NativeConvAddon, stock: Stock, kernelName: string, op: 0 | 1 | 2 | 3) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { a, b } = inputsOf(args, 'a', 'b');
  const av = float32Values(backend, a);
  const bv = float32Values(backend, b);
  if (av === null || bv === null || size(a.shape) === 0 || size(b.shape) === 0) return stock(kernelName)(args) as tf.TensorInfo;
  const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  const out = new Float32Array(size(outShape));
  addon.binaryOp(op, av, Int32Array.from(a.shape), bv, Int32Array.from(b.shape), out);
  return backend.makeTensorInfo(outShape, 'float32', out);
};

const unaryKernel = (addon: NativeConvAddon, stock: Stock, kernelName: string, op: 0 | 1 | 2 | 3) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { x } = inputsOf(args, 'x');
  const xv = float32Values(backend, x);
  if (xv === null || xv.length === 0) return stock(kernelName)(args) as tf.TensorInfo;
  const alpha = op === 1 ? (attrsOf<Partial<tf.StepAttrs>>(args.attrs).alpha ?? 0) : 0;
  const out = new Float32Array(xv.length);
  addon.unaryOp(op, xv, alpha, out);
  return backend.makeTensorInfo(x.shape, 'float32', out);
};

const batchMatMulKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { a, b } = inputsOf(args, 'a', 'b');
  const { transposeA, transposeB } = attrsOf<tf.BatchMatMulAttrs>(args.attrs);
  const av = float32Values(backend, a);
  const bv = float32Values(backend, b);
  const rankA = a.shape.length;
  const rankB = b.shape.length;
  if (av === null || bv === null || rankA < 2 || rankB < 2) return stock(tf.BatchMatMul)(args) as tf.TensorInfo;
  const M = transposeA ? a.shape[rankA - 1]! : a.shape[rankA - 2]!;
  const K = transposeA ? a.shape[rankA - 2]! : a.shape[rankA - 1]!;
  const K2 = transposeB ? b.shape[rankB - 1]! : b.shape[rankB - 2]!;
  const N = transposeB ? b.shape[rankB - 2]! : b.shape[rankB - 1]!;
  const batchA = product(a.shape, 0, rankA - 2);
  const batchB = product(b.shape, 0, rankB - 2);
  const batch = Math.max(batchA, batchB);
  if (K !== K2 || (batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1) || batch * M * N === 0) {
    return stock(tf.BatchMatMul)(args) as tf.TensorInfo;
  }
  const outerDims = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const outShape = [...outerDims, M, N];
  const out = new Float32Array(batch * M * N);
  addon.batchMatMul(av, bv, out, Int32Array.from([batch, batchA, batchB, M, N, K, transposeA ? 1 : 0, transposeB ? 1 : 0]));
  return backend.makeTensorInfo(outShape, 'float32', out);
};

const reductionKernel = (addon: NativeConvAddon, stock: Stock, kernelName: string, mean: boolean) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { x } = inputsOf(args, 'x');
  const { axis, keepDims } = attrsOf<tf.SumAttrs>(args.attrs);
  const xv = float32Values(backend, x);
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const block = xv === null || size(x.shape) === 0 ? null : contiguousAxes(x.shape, axes);
  if (block === null) return stock(kernelName)(args) as tf.TensorInfo;
  const [outer, reduce, inner] = block;
  let outShape = tf.backend_util.computeOutAndReduceShapes(x.shape, axes)[0];
  if (keepDims) outShape = tf.backend_util.expandShapeToKeepDim(outShape, axes);
  const out = new Float32Array(outer * inner);
  addon.reduceSum(xv!, outer, reduce, inner, mean ? 1 / reduce : 1, out);
  return backend.makeTensorInfo(outShape, 'float32', out);
};

const sliceKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { x } = inputsOf(args, 'x');
  const { begin, size: sliceSize } = attrsOf<tf.SliceAttrs>(args.attrs);
  const xv = float32Values(backend, x);
  const [$begin, $size] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, sliceSize);
  if (!$begin || !$size) throw new Error('slice: tf.slice_util.parseSliceParams returned no begin/size');
  tf.slice_util.assertParamsValid(x as tf.Tensor, $begin, $size);
  if (xv === null || size($size) === 0 || tf.slice_util.isSliceContinous(x.shape, $begin, $size)) {
    return stock(tf.Slice)(args) as tf.TensorInfo;
  }
  const out = new Float32Array(size($size));
  addon.sliceCopy(xv, Int32Array.from(x.shape), Int32Array.from($begin), Int32Array.from($size), out);
  return backend.makeTensorInfo($size, 'float32', out);
};

const splitVKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo[] => {
  const backend = args.backend as MathBackendCPU;
  const { x } = inputsOf(args, 'x');
  const { numOrSizeSplits, axis } = attrsOf<tf.SplitVAttrs>(args.attrs);
  const xv = float32Values(backend, x);
  const $axis = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
  if (xv === null || size(x.shape) === 0 || sizes.some((s) => s === 0)) {
    const out = stock(tf.SplitV)(args);
    return Array.isArray(out) ? out : [out];
  }
  const outer = product(x.shape, 0, $axis);
  const inner = product(x.shape, $axis + 1, x.shape.length);
  const parts = sizes.map((s) => new Float32Array(outer * s * inner));
  addon.splitRows(xv, Int32Array.from(sizes.map((s) => s * inner)), outer, parts);
  return parts.map((values, k) => {
    const shape = [...x.shape];
    shape[$axis] = sizes[k]!;
    return backend.makeTensorInfo(shape, 'float32', values);
  });
};

const concatKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const inputs = inputList(args);
  const { axis } = attrsOf<tf.ConcatAttrs>(args.attrs);
  const values = inputs.map((t) => float32Values(backend, t));
  if (inputs.length < 2 || values.some((v) => v === null) || inputs.some((t) => size(t.shape) === 0)) {
    return stock(tf.Concat)(args) as tf.TensorInfo;
  }
  const $axis = tf.util.parseAxisParam(axis, inputs[0]!.shape)[0]!;
  const shapes = inputs.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, $axis);
  const outShape = tf.backend_util.computeOutShape(shapes, $axis);
  const outer = product(outShape, 0, $axis);
  const widths = Int32Array.from(shapes.map((s) => product(s, $axis, s.length)));
  const out = new Float32Array(size(outShape));
  addon.concatRows(values as Float32Array[], widths, outer, out);
  return backend.makeTensorInfo(outShape, 'float32', out);
};

const transposeKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { x } = inputsOf(args, 'x');
  const { perm } = attrsOf<tf.TransposeAttrs>(args.attrs);
  const xv = float32Values(backend, x);
  if (xv === null || size(x.shape) === 0 || x.shape.length > 16) return stock(tf.Transpose)(args) as tf.TensorInfo;
  const outShape = perm.map((p) => x.shape[p]!);
  const out = new Float32Array(size(x.shape));
  addon.transpose(xv, Int32Array.from(x.shape), Int32Array.from(perm), out);
  return backend.makeTensorInfo(outShape, 'float32', out);
};

const softmaxKernel = (addon: NativeConvAddon, stock: Stock) => (args: KernelArgs): tf.TensorInfo => {
  const backend = args.backend as MathBackendCPU;
  const { logits } = inputsOf(args, 'logits');
  const { dim } = attrsOf<tf.SoftmaxAttrs>(args.attrs);
  const xv = float32Values(backend, logits);
  const rank = logits.shape.length;
  if (xv === null || size(logits.shape) === 0 || (dim !== -1 && dim !== rank - 1)) return stock(tf.Softmax)(args) as tf.TensorInfo;
  const cols = logits.shape[rank - 1]!;
  const out = new Float32Array(xv.length);
  addon.softmaxRows(xv, xv.length / cols, cols, out);
  return backend.makeTensorInfo(logits.shape, 'float32', out);
};

export function nativeElementwiseKernels(addon: NativeConvAddon, backendName: string, stock: Stock): tf.KernelConfig[] {
  const kernels: [string, (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]][] = [
    [tf.Add, binaryKernel(addon, stock, tf.Add, 0)],
    [tf.Sub, binaryKernel(addon, stock, tf.Sub, 1)],
    [tf.Multiply, binaryKernel(addon, stock, tf.Multiply, 2)],
    [tf.RealDiv, binaryKernel(addon, stock, tf.RealDiv, 3)],
    [tf.Relu, unaryKernel(addon, stock, tf.Relu, 0)],
    [tf.Step, unaryKernel(addon, stock, tf.Step, 1)],
    [tf.Square, unaryKernel(addon, stock, tf.Square, 2)],
    [tf.Sqrt, unaryKernel(addon, stock, tf.Sqrt, 3)],
    [tf.BatchMatMul, batchMatMulKernel(addon, stock)],
    [tf.Sum, reductionKernel(addon, stock, tf.Sum, false)],
    [tf.Mean, reductionKernel(addon, stock, tf.Mean, true)],
    [tf.Slice, sliceKernel(addon, stock)],
    [tf.SplitV, splitVKernel(addon, stock)],
    [tf.Concat, concatKernel(addon, stock)],
    [tf.Transpose, transposeKernel(addon, stock)],
    [tf.Softmax, softmaxKernel(addon, stock)],
  ];
  return kernels.map(([kernelName, fn]) => ({ kernelName, backendName, kernelFunc: fn }));
}

/** Kernel names nativeElementwiseKernels() provides. */
export const ELEMENTWISE_KERNEL_NAMES: readonly string[] = [
  tf.Add,
  tf.Sub,
  tf.Multiply,
  tf.RealDiv,
  tf.Relu,
  tf.Step,
  tf.Square,
  tf.Sqrt,
  tf.BatchMatMul,
  tf.Sum,
  tf.Mean,
  tf.Slice,
  tf.SplitV,
  tf.Concat,
  tf.Transpose,
  tf.Softmax,
];
