/**
 * Registers tfjs-core's gradient definitions. The CommonJS build of tfjs-core that Node loads
 * ships none (only the `@tensorflow/tfjs` union package bundles them), so without this every
 * tf.grad / variableGrads / optimizer.minimize fails with "gradient function not found".
 * Importing this module registers them; registering again is a no-op.
 */
import * as tf from '@tensorflow/tfjs-core';
import { coreGradientConfigs } from './core-gradients.generated.ts';

/** Registers every gradient that is not registered yet; returns how many were added. */
export function registerCoreGradients(): number {
  let added = 0;
  for (const config of coreGradientConfigs) {
    // Keep a gradient someone registered first (e.g. @tensorflow/tfjs loaded by tfjs-node).
    if (tf.getGradient(config.kernelName) != null) continue;
    tf.registerGradient(config);
    added++;
  }
  return added;
}

registerCoreGradients();
