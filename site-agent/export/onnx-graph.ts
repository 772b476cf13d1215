/**
 * One U-Net stage as a standard ONNX graph (opset 13), op for op what site-agent/model/unet.ts
 * computes, written with the protobufjs code bundled in `onnx-proto`:
 *
 *   input  "image"          float [N, C, X, Y, Z]   (ONNX's channels-first NCDHW; D,H,W = the image's x,y,z)
 *   per level: Conv 3×3×3 (pads 1) → norm → Relu, twice; MaxPool 2×2×2 stride 2 down
 *   decoder:   ConvTranspose 2×2×2 stride 2 (the learned ×2 upsampling) → Concat(skip, up) on C → two conv blocks
 *   head:      Conv 1×1×1 → Softmax over C
 *   output "probabilities"  float [N, K, X, Y, Z]
 *
 * Layout of our weights (NDHWC, tfjs) against ONNX's:
 * - conv kernel [kd,kh,kw,Cin,Cout] → Conv W [Cout,Cin,kd,kh,kw];
 * - ×2 upsampling kernel [2,2,2,Cout,Cin] (tf.conv3dTranspose's filter layout) → ConvTranspose W
 *   [Cin,Cout,2,2,2]: both y[o, 2d+a, 2h+b, 2w+c] = Σ_i x[i,d,h,w]·K[a,b,c,o,i] (upsample.ts), since
 *   with kernel = stride = 2 the blocks do not overlap and ConvTranspose does not flip kernels;
 * - instance norm (instance-norm.ts: biased variance over D,H,W per sample and channel, ε = 1e-5,
 *   y = γ(x − μ)/√(σ² + ε) + β) is exactly InstanceNormalization(epsilon 1e-5);
 * - batch norm at inference (batch-norm.ts: running statistics, ε = 1e-5) is exactly
 *   BatchNormalization(epsilon 1e-5) in inference mode. Its momentum attribute only matters in
 *   training; ONNX's momentum weighs the old running value, so PyTorch's/our 0.1 is ONNX's 0.9.
 */
import onnxProto from 'onnx-proto';
import { PatchFedError } from '../../shared/errors.ts';
import { buildManifest, type UNetConfig } from '../../shared/model/index.ts';
import { sizeOf, type NamedWeights } from '../../shared/weights.ts';
import { BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, INSTANCE_NORM_EPSILON } from '../model/ops/index.ts';

const { onnx } = onnxProto;

export const ONNX_OPSET = 13;
export const ONNX_INPUT = 'image';
export const ONNX_OUTPUT = 'probabilities';

type Attribute = onnxProto.onnx.IAttributeProto;
type Node = onnxProto.onnx.INodeProto;
type Tensor = onnxProto.onnx.ITensorProto;

function ints(name: string, values: number[]): Attribute {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

function int(name: string, value: number): Attribute {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

function float(name: string, value: number): Attribute {
  return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value };
}

function floatTensor(name: string, dims: number[], values: Float32Array): Tensor {
  if (values.length !== sizeOf(dims)) throw new PatchFedError('E_EXPORT', `tensor '${name}' has ${values.length} values; shape [${dims}] needs ${sizeOf(dims)}`);
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  // raw_data is little-endian whatever the host.
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i] ?? 0, true);
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw };
}

/**
 * [k0,k1,k2,A,B] → [B,A,k0,k1,k2]: our conv kernels [kd,kh,kw,Cin,Cout] become Conv's
 * [Cout,Cin,kd,kh,kw], and our upsampling kernels [2,2,2,Cout,Cin] ConvTranspose's [Cin,Cout,2,2,2].
 */
export function kernelToOnnx(values: Float32Array, shape: readonly number[]): { dims: number[]; values: Float32Array } {
  const [k0, k1, k2, A, B] = shape;
  if (shape.length !== 5 || k0 === undefined || k1 === undefined || k2 === undefined || A === undefined || B === undefined) {
    throw new PatchFedError('E_EXPORT', `expected a rank-5 kernel, got [${shape}]`);
  }
  const out = new Float32Array(values.length);
  const spatial = k0 * k1 * k2;
  for (let s = 0; s < spatial; s++) {
    for (let a = 0; a < A; a++) {
      for (let b = 0; b < B; b++) out[(b * A + a) * spatial + s] = values[(s * A + a) * B + b] ?? 0;
    }
  }
  return { dims: [B, A, k0, k1, k2], values: out };
}

class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly initializers: Tensor[] = [];
  private readonly index: Map<string, number>;
  private counter = 0;

  constructor(
    private readonly config: UNetConfig,
    private readonly weights: NamedWeights,
  ) {
    this.index = new Map(weights.manifest.map((s, i) => [s.name, i]));
  }

  private values(name: string): { shape: number[]; values: Float32Array } {
    const i = this.index.get(name);
    const spec = i === undefined ? undefined : this.weights.manifest[i];
    const values = i === undefined ? undefined : this.weights.values[i];
    if (!spec || !values) throw new PatchFedError('E_EXPORT', `weights have no tensor '${name}'`);
    return { shape: spec.shape, values };
  }

  /** Adds an initializer holding weight `name` (kernels converted to ONNX's layout) and returns its name. */
  private weight(name: string, kernel = false): string {
    const { shape, values } = this.values(name);
    if (kernel) {
      const k = kernelToOnnx(values, shape);
      this.initializers.push(floatTensor(name, k.dims, k.values));
    } else {
      this.initializers.push(floatTensor(name, [...shape], values));
    }
    return name;
  }

  private node(opType: string, inputs: string[], attribute: Attribute[] = [], name?: string): string {
    const output = name ?? `${opType.toLowerCase()}_${this.counter++}`;
    this.nodes.push({ opType, input: inputs, output: [output], name: output, attribute });
    return output;
  }

  private conv(prefix: string, x: string, k: number): string {
    const pad = (k - 1) / 2;
    return this.node('Conv', [x, this.weight(`${prefix}/kernel`, true), this.weight(`${prefix}/bias`)], [ints('kernel_shape', [k, k, k]), ints('pads', [pad, pad, pad, pad, pad, pad]), ints('strides', [1, 1, 1])], `${prefix}/out`);
  }

  private norm(prefix: string, x: string): string {
    const gamma = this.weight(`${prefix}/gamma`);
    const beta = this.weight(`${prefix}/beta`);
    if (this.config.norm === 'instance') return this.node('InstanceNormalization', [x, gamma, beta], [float('epsilon', INSTANCE_NORM_EPSILON)], `${prefix}/out`);
    const mean = this.weight(`${prefix}/running_mean`);
    const variance = this.weight(`${prefix}/running_var`);
    return this.node('BatchNormalization', [x, gamma, beta, mean, variance], [float('epsilon', BATCH_NORM_EPSILON), float('momentum', 1 - BATCH_NORM_MOMENTUM)], `${prefix}/out`);
  }

  private stage(prefix: string, x: string): string {
    let h = x;
    for (const j of [1, 2]) {
      h = this.conv(`${prefix}/conv${j}`, h, 3);
      h = this.node('Relu', [this.norm(`${prefix}/norm${j}`, h)], [], `${prefix}/relu${j}`);
    }
    return h;
  }

  build(): string {
    const { depth } = this.config;
    const skips: string[] = [];
    let h = ONNX_INPUT;
    for (let i = 0; i < depth; i++) {
      h = this.stage(`enc${i}`, h);
      if (i < depth - 1) {
        skips.push(h);
        h = this.node('MaxPool', [h], [ints('kernel_shape', [2, 2, 2]), ints('strides', [2, 2, 2])], `enc${i}/pool`);
      }
    }
    for (let i = depth - 2; i >= 0; i--) {
      const up = this.node('ConvTranspose', [h, this.weight(`dec${i}/up/kernel`, true), this.weight(`dec${i}/up/bias`)], [ints('kernel_shape', [2, 2, 2]), ints('strides', [2, 2, 2])], `dec${i}/up/out`);
      const skip = skips[i];
      if (!skip) throw new PatchFedError('E_EXPORT', `no skip connection for level ${i}`);
      h = this.stage(`dec${i}`, this.node('Concat', [skip, up], [int('axis', 1)], `dec${i}/concat`));
    }
    const logits = this.conv('head', h, 1);
    return this.node('Softmax', [logits], [int('axis', 1)], ONNX_OUTPUT);
  }
}

function valueInfo(name: string, channels: number): onnxProto.onnx.IValueInfoProto {
  const dim = (d: number | string): onnxProto.onnx.TensorShapeProto.IDimension => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  return {
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: ['batch', channels, 'x', 'y', 'z'].map(dim) } } },
  };
}

/** The ONNX graph of one stage net; every tensor of `weights` (in the manifest of `config`) becomes an initializer. */
export function unetOnnxGraph(config: UNetConfig, weights: NamedWeights, name: string): onnxProto.onnx.IGraphProto {
  const expected = buildManifest(config);
  if (expected.length !== weights.manifest.length || expected.some((s, i) => s.name !== weights.manifest[i]?.name)) {
    throw new PatchFedError('E_EXPORT', `weights do not match the ${config.norm}-norm U-Net of base ${config.base}, depth ${config.depth}`);
  }
  const b = new GraphBuilder(config, weights);
  b.build();
  return {
    name,
    node: b.nodes,
    initializer: b.initializers,
    input: [valueInfo(ONNX_INPUT, config.inChannels)],
    output: [valueInfo(ONNX_OUTPUT, config.numClasses)],
  };
}

export interface OnnxModelInfo {
  producerVersion: string;
  docString: string;
  /** metadata_props: input layout and preprocessing, labels, provenance. */
  metadata: Record<string, string>;
}

/** The serialised ModelProto (IR version 8, opset 13). */
export function encodeOnnxModel(graph: onnxProto.onnx.IGraphProto, info: OnnxModelInfo): Uint8Array {
  const model: onnxProto.onnx.IModelProto = {
    irVersion: onnx.Version.IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'PatchFed',
    producerVersion: info.producerVersion,
    docString: info.docString,
    graph,
    metadataProps: Object.entries(info.metadata).map(([key, value]) => ({ key, value })),
  };
  const err = onnx.ModelProto.verify(model);
  if (err) throw new PatchFedError('E_EXPORT', `ONNX model does not verify against onnx.proto: ${err}`);
  return onnx.ModelProto.encode(model).finish();
}
