/**
 * U-Net 3D configuration (thesis §2.2.1) and the weight layout it implies. Everything here is
 * plain data: the manifest and parameter count are known before any tensor is allocated, so
 * absurd configurations are refused up front.
 */
import { PatchFedError } from '../errors.ts';
import { MODEL_PRESETS, type Norm, type PresetName } from '../config/model.ts';
import { sizeOf, type WeightSpec } from '../weights.ts';

export interface UNetConfig {
  inChannels: number;
  /** Output channels including background; softmax over them. */
  numClasses: number;
  /** Channels of the first stage; stage i has base·2^i. Thesis: 32. */
  base: number;
  /** Number of stages (resolution levels). Thesis: 5 (32→512). */
  depth: number;
  /** Thesis: BatchNorm (momentum 0.1). Instance norm suits batch size 1 and federations. */
  norm: Norm;
  /** Seed of the He-normal initialisation. */
  seed: number;
}

/** What callers may give: either explicit base/depth, a named preset, or the defaults (thesis). */
export type UNetConfigInput = Pick<UNetConfig, 'inChannels' | 'numClasses'> &
  Partial<Omit<UNetConfig, 'inChannels' | 'numClasses'>> & { preset?: PresetName };

export const UNET_DEFAULTS = { base: 32, depth: 5, norm: 'batch', seed: 0 } as const satisfies Partial<UNetConfig>;

/** Same presets as model configs use; all run the same code. */
export const UNET_PRESETS = MODEL_PRESETS;

/** Refuse models larger than the protocol can move (2 GiB of float32 per payload). */
export const MAX_PARAMETERS = 500_000_000;

export function resolveUNetConfig(input: UNetConfigInput): UNetConfig {
  const preset = input.preset === undefined ? undefined : UNET_PRESETS[input.preset];
  if (input.preset !== undefined && preset === undefined) {
    throw new PatchFedError('model-config', `Unknown model preset '${input.preset}'; choose one of ${Object.keys(UNET_PRESETS).join(', ')}.`, {
      subject: 'preset',
    });
  }
  const config: UNetConfig = {
    inChannels: input.inChannels,
    numClasses: input.numClasses,
    base: input.base ?? preset?.base ?? UNET_DEFAULTS.base,
    depth: input.depth ?? preset?.depth ?? UNET_DEFAULTS.depth,
    norm: input.norm ?? UNET_DEFAULTS.norm,
    seed: input.seed ?? UNET_DEFAULTS.seed,
  };
  validateUNetConfig(config);
  return config;
}

/** Throws PatchFedError naming the first bad field. */
export function validateUNetConfig(config: UNetConfig): void {
  const intIn = (field: keyof UNetConfig, lo: number, hi: number) => {
    const v = config[field] as unknown;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new PatchFedError('model-config', `U-Net field '${field}' must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}.`, { subject: field });
    }
  };
  intIn('inChannels', 1, 1024);
  intIn('numClasses', 2, 1024);
  intIn('base', 1, 512);
  intIn('depth', 1, 8);
  if (!Number.isSafeInteger(config.seed)) {
    throw new PatchFedError('model-config', `U-Net field 'seed' must be an integer, got ${JSON.stringify(config.seed)}.`, { subject: 'seed' });
  }
  if (config.norm !== 'batch' && config.norm !== 'instance') {
    throw new PatchFedError('model-config', `U-Net field 'norm' must be 'batch' or 'instance', got ${JSON.stringify(config.norm)}.`, { subject: 'norm' });
  }
  const params = totalValues(buildManifest(config));
  if (params > MAX_PARAMETERS) {
    throw new PatchFedError(
      'model-config',
      `U-Net with base ${config.base} and depth ${config.depth} has ${params.toLocaleString('en')} weights, more than the limit of ${MAX_PARAMETERS.toLocaleString('en')}.`,
      { subject: 'base' },
    );
  }
}

/** Channels per stage: base·2^i. */
export function stageChannels(config: Pick<UNetConfig, 'base' | 'depth'>): number[] {
  return Array.from({ length: config.depth }, (_, i) => config.base * 2 ** i);
}

/** Every spatial dimension of the input must be divisible by this (one ×2 max-pool per level). */
export function requiredDivisor(config: Pick<UNetConfig, 'depth'>): number {
  return 2 ** (config.depth - 1);
}

/**
 * The ordered weight list: encoder stages (enc0 … enc{depth−1}, the last one is the bottleneck),
 * decoder stages from the deepest (dec{depth−2} … dec0), then the 1×1×1 head. Each stage has two
 * conv → norm blocks; a decoder stage first upsamples ("up") the stage below.
 */
export function buildManifest(config: Pick<UNetConfig, 'inChannels' | 'numClasses' | 'base' | 'depth' | 'norm'>): WeightSpec[] {
  const specs: WeightSpec[] = [];
  const conv = (prefix: string, k: number, cin: number, cout: number) => {
    specs.push({ name: `${prefix}/kernel`, shape: [k, k, k, cin, cout], trainable: true, role: 'conv-kernel' });
    specs.push({ name: `${prefix}/bias`, shape: [cout], trainable: true, role: 'conv-bias' });
  };
  const norm = (prefix: string, c: number) => {
    specs.push({ name: `${prefix}/gamma`, shape: [c], trainable: true, role: 'norm-gamma' });
    specs.push({ name: `${prefix}/beta`, shape: [c], trainable: true, role: 'norm-beta' });
    if (config.norm === 'batch') {
      specs.push({ name: `${prefix}/running_mean`, shape: [c], trainable: false, role: 'norm-running-mean' });
      specs.push({ name: `${prefix}/running_var`, shape: [c], trainable: false, role: 'norm-running-var' });
    }
  };
  const stage = (prefix: string, cin: number, cout: number) => {
    conv(`${prefix}/conv1`, 3, cin, cout);
    norm(`${prefix}/norm1`, cout);
    conv(`${prefix}/conv2`, 3, cout, cout);
    norm(`${prefix}/norm2`, cout);
  };
  const ch = stageChannels(config);
  let cin = config.inChannels;
  ch.forEach((c, i) => {
    stage(`enc${i}`, cin, c);
    cin = c;
  });
  for (let i = config.depth - 2; i >= 0; i--) {
    const c = ch[i]!;
    // Learned ×2 upsampling, tf.conv3dTranspose filter layout [2,2,2,Cout,Cin].
    specs.push({ name: `dec${i}/up/kernel`, shape: [2, 2, 2, c, ch[i + 1]!], trainable: true, role: 'conv-kernel' });
    specs.push({ name: `dec${i}/up/bias`, shape: [c], trainable: true, role: 'conv-bias' });
    stage(`dec${i}`, 2 * c, c);
  }
  conv('head', 1, ch[0]!, config.numClasses);
  return specs;
}

function totalValues(specs: readonly WeightSpec[]): number {
  return specs.reduce((n, s) => n + sizeOf(s.shape), 0);
}
