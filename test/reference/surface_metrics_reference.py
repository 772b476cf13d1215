"""Reference values for test/evaluate-metrics.test.ts, computed once with scipy (not run by npm test).

MONAI itself could not be installed here (not on the local package index), so this script follows
MONAI's code paths (monai/metrics/utils.py get_mask_edges + get_surface_distance,
hausdorff_distance.py, surface_dice.py with use_subvoxels=False, meandice.py ignore_empty=True)
line by line on numpy/scipy, which is what MONAI calls underneath:
  edges      = binary_erosion(mask) ^ mask           (scipy default structure: 6-connectivity, border 0)
  d(pred→gt) = distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred]
  HD95       = max(percentile(d(pred→gt), 95), percentile(d(gt→pred), 95))   (linear interpolation)
  NSD        = (#d(pred→gt) <= tol + #d(gt→pred) <= tol) / (#edges_pred + #edges_gt)
Empty conventions: Dice NaN when the reference lacks the class; HD95 / NSD NaN when both masks are
empty; when exactly one is empty HD95 = inf and NSD = 0.

Run:  python3 test/reference/surface_metrics_reference.py   (numpy 2.4.6, scipy 1.17.1 here)
"""
import json

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

SHAPE = (24, 30, 26)          # row-major, last axis fastest
SPACING = (2.5, 0.9, 1.1)     # mm along each axis
CLASSES = [1, 2, 3, 4, 5]
TOLERANCES = [1.0, 2.0]


def ellipsoid(center, radii_mm):
    i, j, k = np.indices(SHAPE, dtype=np.float64)
    a = (i - center[0]) * SPACING[0] / radii_mm[0]
    b = (j - center[1]) * SPACING[1] / radii_mm[1]
    c = (k - center[2]) * SPACING[2] / radii_mm[2]
    return a * a + b * b + c * c <= 1.0


def box(lo, hi):
    m = np.zeros(SHAPE, dtype=bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def holes():
    i, j, k = np.indices(SHAPE, dtype=np.int64)
    return (i * 7 + j * 13 + k * 31 + i * j * 3 + j * k * 5) % 23 == 0


def volumes():
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[ellipsoid((12, 15, 13), (14, 9, 8))] = 1
    label[box((3, 4, 18), (8, 12, 24))] = 2
    label[box((20, 25, 2), (23, 29, 5))] = 3
    pred = np.zeros(SHAPE, dtype=np.uint8)
    pred[ellipsoid((12.6, 14.2, 13.5), (13, 10, 7.5)) & ~holes()] = 1
    pred[box((4, 4, 17), (9, 11, 24))] = 2
    pred[box((0, 0, 0), (2, 3, 2))] = 4
    return pred, label


def edges(mask):
    return binary_erosion(mask) ^ mask


def surface_distance(e_from, e_to):
    if not e_to.any():
        return np.full(int(e_from.sum()), np.inf)
    return distance_transform_edt(~e_to, sampling=SPACING)[e_from]


def metrics(pred, label, c):
    p, g = pred == c, label == c
    tp = int((p & g).sum())
    dice = float('nan') if not g.any() else 2 * tp / (int(p.sum()) + int(g.sum()))
    ep, eg = edges(p), edges(g)
    d_pg, d_gp = surface_distance(ep, eg), surface_distance(eg, ep)
    if len(d_pg) == 0 and len(d_gp) == 0:
        hd95 = float('nan')
        nsd = {t: float('nan') for t in TOLERANCES}
    elif len(d_pg) == 0 or len(d_gp) == 0:
        hd95 = float('inf')
        nsd = {t: 0.0 for t in TOLERANCES}
    else:
        hd95 = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
        nsd = {t: float(((d_pg <= t).sum() + (d_gp <= t).sum()) / (len(d_pg) + len(d_gp))) for t in TOLERANCES}
    return {'class': c, 'dice': dice, 'hd95': hd95, 'nsd': nsd, 'predVoxels': int(p.sum()), 'labelVoxels': int(g.sum()),
            'predSurfaceVoxels': int(ep.sum()), 'labelSurfaceVoxels': int(eg.sum())}


if __name__ == '__main__':
    pred, label = volumes()
    out = [metrics(pred, label, c) for c in CLASSES]
    print(json.dumps(out, indent=1, allow_nan=True))
