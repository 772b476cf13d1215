// Conv3D forward and both backprops for NDHWC float32 tensors, as tfjs defines
// them (filter layout [fD, fH, fW, inC, outC], dilation 1, explicit pads that
// may be negative for 'same' with stride > filter size).
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchfed {

struct ConvGeometry {
  int64_t batch, inD, inH, inW, inC;
  int64_t fD, fH, fW, outC;
  int64_t sD, sH, sW;
  int64_t padFront, padTop, padLeft;
  int64_t outD, outH, outW;
};

// Number of int fields the JS side passes, in the struct's order.
constexpr int kGeometryFields = 18;

// Returns nullptr when the geometry is usable, else a reason.
const char* validate_geometry(const ConvGeometry& g);

int64_t input_elements(const ConvGeometry& g);
int64_t filter_elements(const ConvGeometry& g);
int64_t output_elements(const ConvGeometry& g);

// y = conv3d(x, w); y is fully overwritten.
void conv3d_forward(const ConvGeometry& g, const float* x, const float* w, float* y);
// dx = d(conv3d)/dx applied to dy; dx is fully overwritten.
void conv3d_backprop_input(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// dw = d(conv3d)/dw applied to dy; dw is fully overwritten.
void conv3d_backprop_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw);

// The kernels keep one reusable arena (packed filter + zero-padded source
// slices). Its size is capped by the limit unless a single depth slice needs
// more; the arena is kept between calls and can be released.
void set_workspace_limit(size_t bytes);
size_t workspace_limit();
size_t workspace_reserved();
void release_workspace();
// The shared arena itself, grown to at least `floats` (contents not kept across
// calls). Kernels other than the convolutions (matmul) size their requests to
// workspace_limit() so that ONE arena bounded by the limit serves them all.
float* workspace_arena(size_t floats);

}  // namespace patchfed
