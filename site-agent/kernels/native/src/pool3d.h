// 3D max pooling (NDHWC float32) with the stock tfjs cpu semantics: the
// forward keeps the first strict maximum (NaN never wins, empty windows give
// -inf); the gradient goes to the LAST position holding the maximum (>=) in
// (depth, row, col) scan order, which matters for ties such as ReLU zeros.
#pragma once

#include <cstdint>

namespace patchfed {

struct PoolGeometry {
  int64_t batch, inD, inH, inW, channels;
  int64_t fD, fH, fW;
  int64_t sD, sH, sW;
  int64_t padFront, padTop, padLeft;
  int64_t outD, outH, outW;
};

constexpr int kPoolGeometryFields = 17;

const char* validate_pool_geometry(const PoolGeometry& g);
int64_t pool_input_elements(const PoolGeometry& g);
int64_t pool_output_elements(const PoolGeometry& g);

void max_pool3d(const PoolGeometry& g, const float* x, float* y);
// dx (input-shaped) = scatter of dy to each window's last maximum; fully overwritten.
void max_pool3d_grad(const PoolGeometry& g, const float* dy, const float* x, float* dx);

}  // namespace patchfed
