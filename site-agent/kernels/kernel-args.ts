/**
 * Typed access to a tfjs kernel call's arguments, the one place the kernel adapters cross from
 * tfjs's untyped maps (NamedTensorInfoMap, NamedAttrMap) to the per-kernel interfaces tfjs
 * declares (tf.Conv3DAttrs, tf.SumAttrs, …).
 */
import * as tf from '@tensorflow/tfjs-core';

export type KernelArgs = Parameters<tf.KernelFunc>[0];
/** A kernel's named inputs, all present. */
export type In<K extends string> = Record<K, tf.TensorInfo>;

/** The named inputs, checked present (tfjs types every input as possibly missing). */
export function inputsOf<K extends string>(args: KernelArgs, ...names: K[]): In<K> {
  const entries = names.map((name) => {
    const t = args.inputs[name];
    if (t === undefined) throw new Error(`kernel input '${name}' is missing (got ${Object.keys(args.inputs).join(', ') || 'none'})`);
    return [name, t] as const;
  });
  return Object.fromEntries(entries) as In<K>;
}

/** Every input, in order (Concat's inputs arrive as an array-like map). */
export function inputList(args: KernelArgs): tf.TensorInfo[] {
  return Object.values(args.inputs).filter((t): t is tf.TensorInfo => t !== undefined);
}

/**
 * The attributes as the interface tfjs declares for the kernel. tfjs builds that object itself
 * from the op's typed attrs, so this is the one unchecked cast of the adapters.
 */
export function attrsOf<A extends object>(attrs: KernelArgs['attrs'] | tf.NamedAttrMap): A {
  return (attrs ?? {}) as unknown as A;
}
