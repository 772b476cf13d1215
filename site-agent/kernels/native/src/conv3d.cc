// Conv3D kernels for NDHWC float32.
//
// Forward and backprop-input are one "indirect GEMM" (as in XNNPACK): every
// destination voxel gets, for each (kd, kh) filter tap, a pointer to a run of
// fW * C contiguous floats in a copy of the source whose rows are zero-padded
// (forward) or zero-dilated (backprop-input, stride > 1) along W. A register
// tile of MR voxels x NR channels then accumulates over all taps without ever
// materialising im2col. Invalid taps (outside D/H, or not on the stride grid)
// point at a zero row, and taps invalid for the whole tile are skipped.
//
// Backprop-filter reads the same padded source: for a (kd, kh) tap the rows
// (kw, ic) of dW are contiguous in both dW and the padded input row, so a
// register tile of MR such rows x NR output channels accumulates over all
// output voxels with two pointer increments per voxel.
//
// All three split their tiles over the pool threads (no reductions, so the
// result does not depend on the thread count) and process the destination in
// depth chunks sized to the workspace limit.
#include "conv3d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "gemm_microkernel.h"
#include "thread_pool.h"

namespace patchfed {
namespace {

using namespace gemm;

// ---------------------------------------------------------------- workspace

size_t default_limit() {
  if (const char* env = std::getenv("PATCHFED_CONV_WORKSPACE_MB")) {
    char* end = nullptr;
    double mb = std::strtod(env, &end);
    if (end != env && mb >= 1) return static_cast<size_t>(mb * 1024 * 1024);
  }
  return size_t(64) << 20;
}

size_t g_limit = default_limit();
float* g_arena = nullptr;
size_t g_arena_floats = 0;

float* arena(size_t floats) {
  if (floats > g_arena_floats) {
    std::free(g_arena);
    g_arena = nullptr;
    g_arena_floats = 0;
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    g_arena = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!g_arena) throw std::bad_alloc();
    g_arena_floats = bytes / sizeof(float);
  }
  return g_arena;
}

size_t limit_floats() { return g_limit / sizeof(float); }

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---------------------------------------------------------------- geometry

// Source index along D or H for destination index t and filter tap k, or -1.
struct AxisMap {
  int64_t mul, add, kmul, div, size;
  inline int64_t operator()(int64_t t, int64_t k) const {
    int64_t num = t * mul + add + k * kmul;
    if (num < 0) return -1;
    if (div != 1) {
      if (num % div != 0) return -1;
      num /= div;
    }
    return num < size ? num : -1;
  }
};

// Destination depth chunk [t0, t1) and the source slices [lo, hi] it reads.
struct Chunk {
  int64_t t0, t1, lo, hi;
  bool empty() const { return lo > hi; }
};

// Greedily grows the chunk from t0 while its source slices fit max_slices.
Chunk plan_chunk(const AxisMap& map, int64_t fD, int64_t t0, int64_t tD, int64_t max_slices) {
  Chunk c{t0, t0, INT64_MAX, -1};
  while (c.t1 < tD) {
    int64_t lo = c.lo, hi = c.hi;
    for (int64_t k = 0; k < fD; ++k) {
      int64_t s = map(c.t1, k);
      if (s < 0) continue;
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
    if (c.t1 > t0 && hi >= lo && hi - lo + 1 > max_slices) break;
    c.lo = lo;
    c.hi = hi;
    ++c.t1;
  }
  return c;
}

// A source tensor [N][sD][sH][sW][sC] copied slice-wise into rows of Qw
// positions; source w goes to q = w * qMul + qAdd (other positions are zero).
struct PaddedSource {
  const float* src;
  int64_t sD, sH, sW, sC;
  int64_t Qw, qMul, qAdd;

  int64_t row_floats() const { return Qw * sC; }
  // Rows need no padding or dilation: read the source in place.
  bool direct() const { return qMul == 1 && qAdd == 0 && Qw == sW; }
  int64_t slice_floats() const { return sH * row_floats(); }

  // Copies slices [lo, hi] of batch item n into dst, using the pool.
  void fill(float* dst, int64_t n, int64_t lo, int64_t hi) const {
    const int64_t rows = (hi - lo + 1) * sH;
    const int64_t rf = row_floats();
    parallel_for(rows, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t sd = lo + r / sH, sh = r % sH;
        const float* in = src + (((n * sD + sd) * sH + sh) * sW) * sC;
        float* out = dst + r * rf;
        if (qMul == 1) {
          const int64_t w0 = std::max<int64_t>(0, -qAdd);
          const int64_t w1 = std::min<int64_t>(sW, Qw - qAdd);
          if (w1 <= w0) {
            std::memset(out, 0, rf * sizeof(float));
            continue;
          }
          const int64_t q0 = w0 + qAdd, q1 = w1 + qAdd;
          std::memset(out, 0, q0 * sC * sizeof(float));
          std::memcpy(out + q0 * sC, in + w0 * sC, (w1 - w0) * sC * sizeof(float));
          std::memset(out + q1 * sC, 0, (Qw - q1) * sC * sizeof(float));
        } else {
          std::memset(out, 0, rf * sizeof(float));
          for (int64_t w = 0; w < sW; ++w) {
            const int64_t q = w * qMul + qAdd;
            if (q >= 0 && q < Qw) std::memcpy(out + q * sC, in + w * sC, sC * sizeof(float));
          }
        }
      }
    });
  }
};

// ---------------------------------------------------------------- micro-kernels

// dW tile (mrows x ncols at dw, leading dimension ldw) += sum over rows r and
// voxels ow of x[r][ow * xstep + i] * dy[r][ow * ystep + j]. Reads MR floats
// of x even when mrows < MR (the source has slack), stores mrows.
template <int MR, int NV, bool PARTIAL>
__attribute__((noinline)) void dw_ukernel(int64_t nrows, const float* const* xrows, const float* const* yrows,
                                          int64_t count, int64_t xstep, int64_t ystep, float* dw, int64_t ldw,
                                          int mrows, int ncols) {
  constexpr int NR = NV * 8;
  v8f acc[MR][NV];
  for (int i = 0; i < MR; ++i) {
    float tmp[NR] = {};
    if (i < mrows) std::memcpy(tmp, dw + i * ldw, ncols * sizeof(float));
    for (int j = 0; j < NV; ++j) acc[i][j] = load8(tmp + j * 8);
  }
  for (int64_t r = 0; r < nrows; ++r) {
    const float* xp = xrows[r];
    if (!xp) continue;
    const float* yp = yrows[r];
    for (int64_t o = 0; o < count; ++o) {
      v8f bv[NV];
      if (PARTIAL) {
        float tmp[NR] = {};
        std::memcpy(tmp, yp, ncols * sizeof(float));
        for (int j = 0; j < NV; ++j) bv[j] = load8(tmp + j * 8);
      } else {
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) bv[j] = load8(yp + j * 8);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const v8f av = bcast(xp[i]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] += av * bv[j];
      }
      xp += xstep;
      yp += ystep;
    }
  }
  for (int i = 0; i < mrows; ++i) {
    float tmp[NR];
    for (int j = 0; j < NV; ++j) store8(tmp + j * 8, acc[i][j]);
    std::memcpy(dw + i * ldw, tmp, ncols * sizeof(float));
  }
}

// ---------------------------------------------------------------- indirect GEMM driver

struct IgemmProblem {
  PaddedSource source;
  AxisMap mapD, mapH;
  float* dst;
  int64_t batch, tD, tH, tW, tC;
  int64_t fD, fH, fW;
  int64_t wStep;  // destination tw reads padded positions tw * wStep + [0, fW)
};

template <typename Value>
void run_igemm(const IgemmProblem& P, const Value& value) {
  const int64_t G = P.fD * P.fH;
  const int64_t kc = P.fW * P.source.sC;
  int MR = 6;
  const std::vector<Panel> panels = plan_panels(P.tC, G, kc, &MR);
  const int64_t packed_floats = panels_floats(panels, G, kc);
  const int64_t zero_floats = round_up(kc + 16, 16);
  const int64_t slice_floats = P.source.slice_floats();
  const int64_t slack = 64;
  const int64_t budget = static_cast<int64_t>(limit_floats()) - packed_floats - zero_floats - slack;
  const bool direct = P.source.direct();
  const int64_t max_slices =
      direct ? P.source.sD
             : std::max<int64_t>(1, std::min<int64_t>(P.source.sD, budget / std::max<int64_t>(1, slice_floats)));
  const int64_t spad_floats = direct ? slack : max_slices * slice_floats + slack;

  float* base = arena(packed_floats + zero_floats + spad_floats);
  float* packed = base;
  float* zero = packed + packed_floats;
  float* spad = zero + zero_floats;
  std::memset(zero, 0, zero_floats * sizeof(float));
  std::memset(spad + spad_floats - slack, 0, slack * sizeof(float));
  pack_panels(packed, panels, G, kc, value);

  const int64_t row_floats = P.source.row_floats();
  const int64_t plane = P.tH * P.tW;

  for (int64_t n = 0; n < P.batch; ++n) {
    for (int64_t t0 = 0; t0 < P.tD;) {
      const Chunk ch = plan_chunk(P.mapD, P.fD, t0, P.tD, max_slices);
      t0 = ch.t1;
      const float* sbase = spad;
      if (!ch.empty()) {
        if (direct)
          sbase = P.source.src + (n * P.source.sD + ch.lo) * slice_floats;
        else
          P.source.fill(spad, n, ch.lo, ch.hi);
      }
      const int64_t positions = (ch.t1 - ch.t0) * plane;
      const int64_t tiles = (positions + MR - 1) / MR;
      float* dst_chunk = P.dst + ((n * P.tD + ch.t0) * plane) * P.tC;

      parallel_for(tiles, [&](int64_t tile_begin, int64_t tile_end, int) {
        constexpr int kMaxMR = 12;
        std::vector<const float*> aptr(G * MR);
        std::vector<int> groups(G);
        float* cptr[kMaxMR];
        std::vector<float> dummy(P.tC + 16);
        int64_t woff[kMaxMR];
        // A tile's voxels fall into a few runs of one destination row (d, h)
        // each; D/H validity and the source row are shared within a run.
        struct Run {
          int begin, end;
          int64_t d, h;
        } runs[kMaxMR];
        for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
          const int64_t p0 = tile * MR;
          const int rows = static_cast<int>(std::min<int64_t>(MR, positions - p0));
          // Decode the first voxel once, then step through the rest.
          int64_t d = ch.t0 + p0 / plane, h = (p0 % plane) / P.tW, w = p0 % P.tW;
          int nruns = 0;
          for (int i = 0; i < MR; ++i) {
            if (i < rows) {
              if (i == 0 || w == 0) runs[nruns++] = Run{i, i, d, h};
              runs[nruns - 1].end = i + 1;
              woff[i] = w * P.wStep * P.source.sC;
              cptr[i] = dst_chunk + (p0 + i) * P.tC;
              if (++w == P.tW) {
                w = 0;
                if (++h == P.tH) h = 0, ++d;
              }
            } else {
              cptr[i] = dummy.data();
            }
          }
          int nk = 0;
          if (!ch.empty()) {
            for (int64_t kd = 0; kd < P.fD; ++kd) {
              for (int64_t kh = 0; kh < P.fH; ++kh) {
                bool any = false;
                const float** a = aptr.data() + nk * MR;
                for (int r = 0; r < nruns; ++r) {
                  const Run& run = runs[r];
                  const int64_t sd = P.mapD(run.d, kd);
                  const int64_t sh = sd < 0 ? -1 : P.mapH(run.h, kh);
                  if (sh < 0) {
                    for (int i = run.begin; i < run.end; ++i) a[i] = zero;
                    continue;
                  }
                  const float* row = sbase + ((sd - ch.lo) * P.source.sH + sh) * row_floats;
                  for (int i = run.begin; i < run.end; ++i) a[i] = row + woff[i];
                  any = true;
                }
                for (int i = rows; i < MR; ++i) a[i] = zero;
                if (any) groups[nk++] = static_cast<int>(kd * P.fH + kh);
              }
            }
          }
          for (const Panel& pn : panels) run_tile(MR, pn, nk, aptr.data(), groups.data(), packed, kc, cptr);
        }
      });
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- public API

const char* validate_geometry(const ConvGeometry& g) {
  const int64_t dims[] = {g.batch, g.inD, g.inH, g.inW, g.inC, g.fD, g.fH, g.fW, g.outC,
                          g.sD,    g.sH,  g.sW,  g.outD, g.outH, g.outW};
  for (int64_t d : dims)
    if (d < 1 || d > (int64_t(1) << 30)) return "every size and stride must be a positive integer";
  const int64_t pads[] = {g.padFront, g.padTop, g.padLeft};
  for (int64_t p : pads)
    if (p < -(int64_t(1) << 30) || p > (int64_t(1) << 30)) return "padding out of range";
  // Every output voxel's window must start inside the padded input as tfjs computes it.
  if ((g.outD - 1) * g.sD - g.padFront >= g.inD + g.fD || (g.outH - 1) * g.sH - g.padTop >= g.inH + g.fH ||
      (g.outW - 1) * g.sW - g.padLeft >= g.inW + g.fW)
    return "output shape does not match input, filter, strides and padding";
  const double elems = double(g.batch) * g.inD * g.inH * g.inW * g.inC;
  const double out = double(g.batch) * g.outD * g.outH * g.outW * g.outC;
  const double filt = double(g.fD) * g.fH * g.fW * g.inC * g.outC;
  if (elems > 4e9 || out > 4e9 || filt > 4e9) return "tensor too large";
  return nullptr;
}

int64_t input_elements(const ConvGeometry& g) { return g.batch * g.inD * g.inH * g.inW * g.inC; }
int64_t filter_elements(const ConvGeometry& g) { return g.fD * g.fH * g.fW * g.inC * g.outC; }
int64_t output_elements(const ConvGeometry& g) { return g.batch * g.outD * g.outH * g.outW * g.outC; }

void conv3d_forward(const ConvGeometry& g, const float* x, const float* w, float* y) {
  IgemmProblem P;
  P.source = PaddedSource{x, g.inD, g.inH, g.inW, g.inC, (g.outW - 1) * g.sW + g.fW, 1, g.padLeft};
  P.mapD = AxisMap{g.sD, -g.padFront, 1, 1, g.inD};
  P.mapH = AxisMap{g.sH, -g.padTop, 1, 1, g.inH};
  P.dst = y;
  P.batch = g.batch;
  P.tD = g.outD, P.tH = g.outH, P.tW = g.outW, P.tC = g.outC;
  P.fD = g.fD, P.fH = g.fH, P.fW = g.fW;
  P.wStep = g.sW;
  // Reduction index k = kw * inC + ic, so the filter is already [G][k][outC].
  const int64_t gk = g.fW * g.inC;
  run_igemm(P, [&](int64_t grp, int64_t k, int64_t col) { return w[(grp * gk + k) * g.outC + col]; });
}

void conv3d_backprop_input(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  IgemmProblem P;
  // dy dilated by the W stride, shifted so dx column xw reads positions xw + j,
  // j = fW - 1 - kw (the filter runs backwards along W).
  P.source = PaddedSource{dy, g.outD, g.outH, g.outW, g.outC, g.inW - 1 + g.fW, g.sW, g.fW - 1 - g.padLeft};
  P.mapD = AxisMap{1, g.padFront, -1, g.sD, g.outD};
  P.mapH = AxisMap{1, g.padTop, -1, g.sH, g.outH};
  P.dst = dx;
  P.batch = g.batch;
  P.tD = g.inD, P.tH = g.inH, P.tW = g.inW, P.tC = g.inC;
  P.fD = g.fD, P.fH = g.fH, P.fW = g.fW;
  P.wStep = 1;
  run_igemm(P, [&](int64_t grp, int64_t k, int64_t col) {
    const int64_t j = k / g.outC, oc = k % g.outC;
    const int64_t kw = g.fW - 1 - j;
    return w[((grp * g.fW + kw) * g.inC + col) * g.outC + oc];
  });
}

void conv3d_backprop_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw) {
  const int64_t G = g.fD * g.fH;
  const int64_t R = g.fW * g.inC;  // contiguous (kw, ic) rows of dW per tap group
  std::fill(dw, dw + filter_elements(g), 0.0f);

  const PaddedSource source{x, g.inD, g.inH, g.inW, g.inC, (g.outW - 1) * g.sW + g.fW, 1, g.padLeft};
  const AxisMap mapD{g.sD, -g.padFront, 1, 1, g.inD};
  const AxisMap mapH{g.sH, -g.padTop, 1, 1, g.inH};

  const int MR = g.outC <= 8 ? 12 : 6;
  const int NV = g.outC <= 8 ? 1 : 2;
  const int NR = NV * 8;
  const int64_t row_blocks = (R + MR - 1) / MR;
  const int64_t col_panels = (g.outC + NR - 1) / NR;
  const int64_t tiles = G * row_blocks * col_panels;

  const int64_t slice_floats = source.slice_floats();
  const int64_t slack = 64;
  const int64_t budget = static_cast<int64_t>(limit_floats()) - slack;
  // In place only if no register tile reads past a row's last (kw, ic).
  const bool direct = source.direct() && R % MR == 0;
  const int64_t max_slices =
      direct ? g.inD : std::max<int64_t>(1, std::min<int64_t>(g.inD, budget / std::max<int64_t>(1, slice_floats)));
  float* spad = direct ? nullptr : arena(max_slices * slice_floats + slack);
  if (spad) std::memset(spad + max_slices * slice_floats, 0, slack * sizeof(float));

  const int64_t row_floats = source.row_floats();
  const int64_t dy_row = g.outW * g.outC;
  // Rows per cache block: keep the dy and x rows a block touches near L2 size.
  const int64_t bytes_per_row = (dy_row + row_floats) * int64_t(sizeof(float));
  const int64_t block_rows = std::max<int64_t>(1, (128 << 10) / std::max<int64_t>(1, bytes_per_row));

  std::vector<const float*> xrows, yrows;
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t t0 = 0; t0 < g.outD;) {
      const Chunk ch = plan_chunk(mapD, g.fD, t0, g.outD, max_slices);
      t0 = ch.t1;
      if (ch.empty()) continue;
      const float* sbase = spad;
      if (direct)
        sbase = x + (n * g.inD + ch.lo) * slice_floats;
      else
        source.fill(spad, n, ch.lo, ch.hi);
      const int64_t nrows = (ch.t1 - ch.t0) * g.outH;
      xrows.assign(G * nrows, nullptr);
      yrows.resize(nrows);
      for (int64_t r = 0; r < nrows; ++r) {
        const int64_t od = ch.t0 + r / g.outH, oh = r % g.outH;
        yrows[r] = dy + ((n * g.outD + od) * g.outH + oh) * dy_row;
        for (int64_t kd = 0; kd < g.fD; ++kd) {
          const int64_t sd = mapD(od, kd);
          if (sd < 0) continue;
          for (int64_t kh = 0; kh < g.fH; ++kh) {
            const int64_t sh = mapH(oh, kh);
            if (sh < 0) continue;
            xrows[(kd * g.fH + kh) * nrows + r] = sbase + ((sd - ch.lo) * g.inH + sh) * row_floats;
          }
        }
      }
      parallel_for(tiles, [&](int64_t tile_begin, int64_t tile_end, int) {
        std::vector<const float*> xr(block_rows), yc(block_rows);
        for (int64_t r0 = 0; r0 < nrows; r0 += block_rows) {
          const int64_t nr = std::min(block_rows, nrows - r0);
          for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
            const int64_t grp = tile / (row_blocks * col_panels);
            const int64_t rb = (tile / col_panels) % row_blocks;
            const int64_t cp = tile % col_panels;
            const int64_t k0 = rb * MR, col0 = cp * NR;
            const int mrows = static_cast<int>(std::min<int64_t>(MR, R - k0));
            const int ncols = static_cast<int>(std::min<int64_t>(NR, g.outC - col0));
            const float* const* src_rows = xrows.data() + grp * nrows + r0;
            for (int64_t r = 0; r < nr; ++r) xr[r] = src_rows[r] ? src_rows[r] + k0 : nullptr;
            // dy rows are read at column col0 onwards.
            for (int64_t r = 0; r < nr; ++r) yc[r] = yrows[r0 + r] + col0;
            float* tile_dw = dw + (grp * R + k0) * g.outC + col0;
            const int64_t xstep = g.sW * g.inC;
            if (MR == 12) {
              if (ncols == NR)
                dw_ukernel<12, 1, false>(nr, xr.data(), yc.data(), g.outW, xstep, g.outC, tile_dw, g.outC, mrows, ncols);
              else
                dw_ukernel<12, 1, true>(nr, xr.data(), yc.data(), g.outW, xstep, g.outC, tile_dw, g.outC, mrows, ncols);
            } else {
              if (ncols == NR)
                dw_ukernel<6, 2, false>(nr, xr.data(), yc.data(), g.outW, xstep, g.outC, tile_dw, g.outC, mrows, ncols);
              else
                dw_ukernel<6, 2, true>(nr, xr.data(), yc.data(), g.outW, xstep, g.outC, tile_dw, g.outC, mrows, ncols);
            }
          }
        }
      });
    }
  }
}

void set_workspace_limit(size_t bytes) {
  g_limit = std::max<size_t>(bytes, size_t(1) << 20);
  if (g_arena_floats * sizeof(float) > g_limit) release_workspace();
}

size_t workspace_limit() { return g_limit; }
float* workspace_arena(size_t floats) { return arena(floats); }
size_t workspace_reserved() { return g_arena_floats * sizeof(float); }

void release_workspace() {
  std::free(g_arena);
  g_arena = nullptr;
  g_arena_floats = 0;
}

}  // namespace patchfed
