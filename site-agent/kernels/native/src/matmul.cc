#include "matmul.h"

#include <algorithm>
#include <vector>

#include "gemm_microkernel.h"
#include "thread_pool.h"

namespace patchfed {

using namespace gemm;

void batch_matmul(const float* a, const float* b, float* c, int64_t batch, int64_t batchA, int64_t batchB, int64_t M,
                  int64_t N, int64_t K, bool transposeA, bool transposeB) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(c, c + batch * M * N, 0.0f);
    return;
  }
  int MR = 6;
  const std::vector<Panel> panels = plan_panels(N, 1, K, &MR);
  std::vector<float> packed(panels_floats(panels, 1, K));
  // op(a) rows must be contiguous in K for the micro-kernel: transpose a copy.
  std::vector<float> at(transposeA ? M * K : 0);
  std::vector<float> zero(K + 16, 0.0f);
  const int64_t tiles = (M + MR - 1) / MR;

  for (int64_t bi = 0; bi < batch; ++bi) {
    const float* ab = a + (batchA == 1 ? 0 : bi) * M * K;
    const float* bb = b + (batchB == 1 ? 0 : bi) * K * N;
    float* cb = c + bi * M * N;
    if (bi == 0 || batchB != 1) {
      if (transposeB)  // b is N x K
        pack_panels(packed.data(), panels, 1, K, [&](int64_t, int64_t k, int64_t n) { return bb[n * K + k]; });
      else
        pack_panels(packed.data(), panels, 1, K, [&](int64_t, int64_t k, int64_t n) { return bb[k * N + n]; });
    }
    const float* arows = ab;
    if (transposeA) {
      if (bi == 0 || batchA != 1) {  // a is K x M
        for (int64_t k = 0; k < K; ++k)
          for (int64_t m = 0; m < M; ++m) at[m * K + k] = ab[k * M + m];
      }
      arows = at.data();
    }
    parallel_for(tiles, [&](int64_t begin, int64_t end, int) {
      const float* ap[12];
      float* cp[12];
      std::vector<float> dummy(N + 16);
      const int group = 0;
      for (int64_t t = begin; t < end; ++t) {
        for (int i = 0; i < MR; ++i) {
          const int64_t m = t * MR + i;
          ap[i] = m < M ? arows + m * K : zero.data();
          cp[i] = m < M ? cb + m * N : dummy.data();
        }
        for (const Panel& pn : panels) run_tile(MR, pn, 1, ap, &group, packed.data(), K, cp);
      }
    });
  }
}

}  // namespace patchfed
