// Batched float32 matrix product with optional transposes, on the shared GEMM
// micro-kernel (the U-Net's learned upsampling is a matmul).
#pragma once

#include <cstdint>

namespace patchfed {

// c[bi] = op(a[bi or 0]) x op(b[bi or 0]) for bi < batch; a batch operand of
// batchA == 1 (or batchB == 1) is shared. op(a) is M x K, op(b) is K x N.
void batch_matmul(const float* a, const float* b, float* c, int64_t batch, int64_t batchA, int64_t batchB, int64_t M,
                  int64_t N, int64_t K, bool transposeA, bool transposeB);

}  // namespace patchfed
