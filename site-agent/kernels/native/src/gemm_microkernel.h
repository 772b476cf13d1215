// The register-tiled GEMM micro-kernel shared by the convolutions and matmul:
// an MR x (NV*8) tile of C accumulates sum_k A[i][k] * B[k][j] where every row
// i of A is read through its own pointer ("indirect GEMM"), so convolutions
// never build im2col matrices. Vectorised with GCC vector extensions, which
// compile to AVX2/FMA (or AVX-512, NEON, SSE) for the -march in use.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace patchfed {
namespace gemm {

typedef float v8f __attribute__((vector_size(32)));
// Unaligned, aliasing view of 8 floats (like __m256 in the intrinsics headers).
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

inline v8f load8(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }
inline void store8(float* p, v8f v) { *reinterpret_cast<v8f_u*>(p) = v; }
inline v8f bcast(float x) { return v8f{x, x, x, x, x, x, x, x}; }

// Column panel of the destination channels: ncols valid of nv * 8 packed.
struct Panel {
  int64_t col0;
  int ncols;
  int nv;
  int64_t offset;  // into the packed filter, in floats
};

// acc[MR][NR] = sum over nk tap groups and kc reduction steps of a * b, then
// stored to cp[i] + col0 (first ncols columns).
template <int MR, int NV>
__attribute__((noinline)) inline void igemm_ukernel(int nk, const float* const* ap, const int* groups,
                                             const float* bpanel, int64_t group_stride, int64_t kc,
                                             float* const* cp, int64_t col0, int ncols) {
  constexpr int NR = NV * 8;
  v8f acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = v8f{};
  for (int g = 0; g < nk; ++g) {
    const float* a[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) a[i] = ap[g * MR + i];
    const float* b = bpanel + groups[g] * group_stride;
    for (int64_t k = 0; k < kc; ++k) {
      v8f bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = load8(b + j * 8);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const v8f av = bcast(a[i][k]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] += av * bv[j];
      }
      b += NR;
    }
  }
  if (ncols == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) store8(cp[i] + col0 + j * 8, acc[i][j]);
  } else {
    for (int i = 0; i < MR; ++i) {
      float tmp[NR];
      for (int j = 0; j < NV; ++j) store8(tmp + j * 8, acc[i][j]);
      std::memcpy(cp[i] + col0, tmp, ncols * sizeof(float));
    }
  }
}

// Packs B[g][k][col] = value(g, k, col) into panels; MR is 12 for <= 8
// destination channels (one 8-wide panel), else 6 with 16-wide panels.
inline std::vector<Panel> plan_panels(int64_t tC, int64_t groups, int64_t kc, int* mr) {
  std::vector<Panel> panels;
  *mr = tC <= 8 ? 12 : 6;
  int64_t offset = 0;
  for (int64_t col0 = 0; col0 < tC;) {
    const int64_t left = tC - col0;
    const int nv = (*mr == 12 || left <= 8) ? 1 : 2;
    const int ncols = static_cast<int>(std::min<int64_t>(left, nv * 8));
    panels.push_back(Panel{col0, ncols, nv, offset});
    offset += groups * kc * nv * 8;
    col0 += ncols;
  }
  return panels;
}

template <typename Value>
void pack_panels(float* packed, const std::vector<Panel>& panels, int64_t groups, int64_t kc, const Value& value) {
  for (const Panel& p : panels) {
    const int nr = p.nv * 8;
    float* out = packed + p.offset;
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t k = 0; k < kc; ++k, out += nr)
        for (int c = 0; c < nr; ++c) out[c] = c < p.ncols ? value(g, k, p.col0 + c) : 0.0f;
  }
}

inline int64_t panels_floats(const std::vector<Panel>& panels, int64_t groups, int64_t kc) {
  int64_t total = 0;
  for (const Panel& p : panels) total += groups * kc * p.nv * 8;
  return total;
}

// Runs one tile of MR rows (12 or 6, as plan_panels chose) against one panel.
inline void run_tile(int mr, const Panel& pn, int nk, const float* const* ap, const int* groups, const float* packed,
                     int64_t kc, float* const* cp) {
  const float* bpanel = packed + pn.offset;
  const int64_t gstride = kc * pn.nv * 8;
  if (mr == 12)
    igemm_ukernel<12, 1>(nk, ap, groups, bpanel, gstride, kc, cp, pn.col0, pn.ncols);
  else if (pn.nv == 2)
    igemm_ukernel<6, 2>(nk, ap, groups, bpanel, gstride, kc, cp, pn.col0, pn.ncols);
  else
    igemm_ukernel<6, 1>(nk, ap, groups, bpanel, gstride, kc, cp, pn.col0, pn.ncols);
}

}  // namespace gemm
}  // namespace patchfed
