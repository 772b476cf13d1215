// Okabe–Ito colour-blind-safe palette. Black is kept for "mean" lines; beyond seven series the
// colours repeat with a different dash pattern, so 35 series stay distinguishable.
export const MEAN_COLOR = '#000000';
export const SERIES_COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442'];
const DASHES = [[], [10, 5], [3, 4], [12, 4, 3, 4], [2, 8]];

export function seriesStyle(index) {
  return {
    stroke: SERIES_COLORS[index % SERIES_COLORS.length],
    dash: DASHES[Math.floor(index / SERIES_COLORS.length) % DASHES.length],
  };
}
