/**
 * 6-neighbour label morphology on x-fastest volumes, used to keep label nesting exact.
 * Voxel reads are written `labels[j]!`: every index is in range by the loop bounds, and a
 * per-voxel check would only slow the loops (noUncheckedIndexedAccess).
 */

export type Shape3 = readonly [number, number, number];

/** A 256-entry membership table for label values: table[v] = 1 when v is in the set. */
export function labelSet(...values: number[]): Uint8Array {
  const t = new Uint8Array(256);
  for (const v of values) t[v] = 1;
  return t;
}

/**
 * One step of dilation: every voxel whose value is in `from` sets each 6-neighbour whose value
 * is in `into` to `value`. Voxels set in this pass do not spread further (unless `value` ∈ `from`
 * and they are visited later; callers pass a `value` outside `from`).
 */
export function dilateLabel(labels: Uint8Array, shape: Shape3, from: Uint8Array, into: Uint8Array, value: number): number {
  const [X, Y, Z] = shape;
  const XY = X * Y;
  let changed = 0;
  const setIf = (j: number): void => {
    if (into[labels[j]!]) {
      labels[j] = value;
      changed++;
    }
  };
  let i = 0;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++, i++) {
        if (!from[labels[i]!]) continue;
        // Only tumour/lesion surfaces get here: a handful of voxels, so the closure is fine.
        if (x > 0) setIf(i - 1);
        if (x < X - 1) setIf(i + 1);
        if (y > 0) setIf(i - X);
        if (y < Y - 1) setIf(i + X);
        if (z > 0) setIf(i - XY);
        if (z < Z - 1) setIf(i + XY);
      }
    }
  }
  return changed;
}

/** mask AND all 6 neighbours in mask (voxels on the volume border count as not interior). */
export function erode(mask: Uint8Array, shape: Shape3): Uint8Array {
  const [X, Y, Z] = shape;
  const XY = X * Y;
  const out = new Uint8Array(mask.length);
  for (let z = 1; z < Z - 1; z++) {
    for (let y = 1; y < Y - 1; y++) {
      let i = (z * Y + y) * X + 1;
      for (let x = 1; x < X - 1; x++, i++) {
        if (mask[i] && mask[i - 1] && mask[i + 1] && mask[i - X] && mask[i + X] && mask[i - XY] && mask[i + XY]) out[i] = 1;
      }
    }
  }
  return out;
}
