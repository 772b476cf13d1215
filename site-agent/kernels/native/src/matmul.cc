// Batched matmul on the shared GEMM micro-kernel. The packed B panels (and a
// transposed copy of A when transposeA) live in the convolutions' arena and are
// built for a block of the reduction dimension K at a time, sized to the
// workspace limit: the U-Net's upsampling weight gradient has K = voxels, and
// packing all of it would be an unbounded, activation-sized allocation. Blocks
// after the first accumulate through a per-thread tile buffer; blocks run in a
// fixed order and each C row belongs to one tile, so the result does not
// depend on the thread count.
#include "matmul.h"

#include <algorithm>
#include <vector>

#include "conv3d.h"
#include "gemm_microkernel.h"
#include "thread_pool.h"

namespace patchfed {

using namespace gemm;

namespace {
// Smallest K block worth a pass over C (the limit may be exceeded to reach it,
// as the convolutions exceed it for a single depth slice).
constexpr int64_t kMinKBlock = 64;
}  // namespace

void batch_matmul(const float* a, const float* b, float* c, int64_t batch, int64_t batchA, int64_t batchB, int64_t M,
                  int64_t N, int64_t K, bool transposeA, bool transposeB) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(c, c + batch * M * N, 0.0f);
    return;
  }
  int MR = 6;
  // Packed floats per K row (all panels, padded to 8 or 16 columns).
  const int64_t packed_per_k = panels_floats(plan_panels(N, 1, 1, &MR), 1, 1);
  const int64_t per_k = packed_per_k + (transposeA ? M : 0) + 1;  // + the zero row
  const int64_t budget = static_cast<int64_t>(workspace_limit() / sizeof(float)) - 16;
  const int64_t kb = std::min(K, std::max(kMinKBlock, budget / per_k));
  const bool single_block = kb == K;

  const std::vector<Panel> panels = plan_panels(N, 1, kb, &MR);
  const int64_t packed_floats = panels_floats(panels, 1, kb);
  const int64_t at_floats = transposeA ? M * kb : 0;
  const int64_t zero_floats = kb + 16;
  float* packed = workspace_arena(packed_floats + at_floats + zero_floats);
  float* at = packed + packed_floats;
  float* zero = at + at_floats;
  std::fill(zero, zero + zero_floats, 0.0f);
  const int64_t tiles = (M + MR - 1) / MR;

  for (int64_t bi = 0; bi < batch; ++bi) {
    const float* ab = a + (batchA == 1 ? 0 : bi) * M * K;
    const float* bb = b + (batchB == 1 ? 0 : bi) * K * N;
    float* cb = c + bi * M * N;
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
      const int64_t kl = std::min(kb, K - k0);
      // With one block, a shared operand is packed once for the whole batch.
      if (!single_block || bi == 0 || batchB != 1) {
        if (transposeB)  // b is N x K
          pack_panels(packed, panels, 1, kl, [&](int64_t, int64_t k, int64_t n) { return bb[n * K + k0 + k]; });
        else
          pack_panels(packed, panels, 1, kl, [&](int64_t, int64_t k, int64_t n) { return bb[(k0 + k) * N + n]; });
      }
      // op(a) rows must be contiguous in K for the micro-kernel.
      const float* arows = ab + k0;
      int64_t astride = K;
      if (transposeA) {
        if (!single_block || bi == 0 || batchA != 1) {  // a is K x M
          for (int64_t k = 0; k < kl; ++k)
            for (int64_t m = 0; m < M; ++m) at[m * kl + k] = ab[(k0 + k) * M + m];
        }
        arows = at;
        astride = kl;
      }
      const bool accumulate = k0 > 0;
      parallel_for(tiles, [&](int64_t begin, int64_t end, int) {
        const float* ap[12];
        float* cp[12];
        std::vector<float> dummy(N + 16);
        std::vector<float> partial(accumulate ? MR * N : 0);
        const int group = 0;
        for (int64_t t = begin; t < end; ++t) {
          for (int i = 0; i < MR; ++i) {
            const int64_t m = t * MR + i;
            ap[i] = m < M ? arows + m * astride : zero;
            cp[i] = m >= M ? dummy.data() : accumulate ? partial.data() + i * N : cb + m * N;
          }
          for (const Panel& pn : panels) run_tile(MR, pn, 1, ap, &group, packed, kl, cp);
          if (accumulate) {
            const int64_t rows = std::min<int64_t>(MR, M - t * MR);
            for (int64_t i = 0; i < rows; ++i) {
              float* crow = cb + (t * MR + i) * N;
              const float* prow = partial.data() + i * N;
              for (int64_t j = 0; j < N; ++j) crow[j] += prow[j];
            }
          }
        }
      });
    }
  }
}

}  // namespace patchfed
