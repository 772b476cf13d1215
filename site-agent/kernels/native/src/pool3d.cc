#include "pool3d.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "thread_pool.h"

namespace patchfed {
namespace {

struct Window {
  int64_t d0, d1, h0, h1, w0, w1;  // clipped input ranges [x0, x1)
};

inline Window window_of(const PoolGeometry& g, int64_t od, int64_t oh, int64_t ow) {
  Window w;
  const int64_t dc = od * g.sD - g.padFront, hc = oh * g.sH - g.padTop, wc = ow * g.sW - g.padLeft;
  w.d0 = std::max<int64_t>(0, dc), w.d1 = std::min(g.inD, dc + g.fD);
  w.h0 = std::max<int64_t>(0, hc), w.h1 = std::min(g.inH, hc + g.fH);
  w.w0 = std::max<int64_t>(0, wc), w.w1 = std::min(g.inW, wc + g.fW);
  return w;
}

}  // namespace

const char* validate_pool_geometry(const PoolGeometry& g) {
  const int64_t dims[] = {g.batch, g.inD, g.inH, g.inW, g.channels, g.fD, g.fH, g.fW,
                          g.sD,    g.sH,  g.sW,  g.outD, g.outH, g.outW};
  for (int64_t d : dims)
    if (d < 1 || d > (int64_t(1) << 30)) return "every size and stride must be a positive integer";
  const int64_t pads[] = {g.padFront, g.padTop, g.padLeft};
  for (int64_t p : pads)
    if (p < -(int64_t(1) << 30) || p > (int64_t(1) << 30)) return "padding out of range";
  if (double(g.batch) * g.inD * g.inH * g.inW * g.channels > 4e9 ||
      double(g.batch) * g.outD * g.outH * g.outW * g.channels > 4e9)
    return "tensor too large";
  return nullptr;
}

int64_t pool_input_elements(const PoolGeometry& g) { return g.batch * g.inD * g.inH * g.inW * g.channels; }
int64_t pool_output_elements(const PoolGeometry& g) { return g.batch * g.outD * g.outH * g.outW * g.channels; }

void max_pool3d(const PoolGeometry& g, const float* x, float* y) {
  const int64_t C = g.channels;
  const int64_t rows = g.batch * g.outD * g.outH;
  parallel_for(rows, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / (g.outD * g.outH), od = (r / g.outH) % g.outD, oh = r % g.outH;
      for (int64_t ow = 0; ow < g.outW; ++ow) {
        float* out = y + ((r * g.outW) + ow) * C;
        std::fill(out, out + C, -std::numeric_limits<float>::infinity());
        const Window w = window_of(g, od, oh, ow);
        for (int64_t xd = w.d0; xd < w.d1; ++xd)
          for (int64_t xh = w.h0; xh < w.h1; ++xh)
            for (int64_t xw = w.w0; xw < w.w1; ++xw) {
              const float* in = x + (((n * g.inD + xd) * g.inH + xh) * g.inW + xw) * C;
              for (int64_t c = 0; c < C; ++c) out[c] = in[c] > out[c] ? in[c] : out[c];
            }
      }
    }
  });
}

void max_pool3d_grad(const PoolGeometry& g, const float* dy, const float* x, float* dx) {
  const int64_t C = g.channels;
  std::memset(dx, 0, pool_input_elements(g) * sizeof(float));
  // Windows of different output depth slices touch disjoint input slices when
  // fD <= sD, so threads can own depth slices; otherwise scatter serially.
  const bool disjoint = g.fD <= g.sD;
  const int64_t slabs = g.batch * g.outD;
  auto body = [&](int64_t begin, int64_t end, int) {
    std::vector<float> best(C);
    std::vector<int64_t> where(C);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t n = s / g.outD, od = s % g.outD;
      for (int64_t oh = 0; oh < g.outH; ++oh)
        for (int64_t ow = 0; ow < g.outW; ++ow) {
          const float* grad = dy + (((s * g.outH) + oh) * g.outW + ow) * C;
          std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
          std::fill(where.begin(), where.end(), int64_t(-1));
          const Window w = window_of(g, od, oh, ow);
          for (int64_t xd = w.d0; xd < w.d1; ++xd)
            for (int64_t xh = w.h0; xh < w.h1; ++xh)
              for (int64_t xw = w.w0; xw < w.w1; ++xw) {
                const int64_t base = (((n * g.inD + xd) * g.inH + xh) * g.inW + xw) * C;
                const float* in = x + base;
                for (int64_t c = 0; c < C; ++c)
                  if (in[c] >= best[c]) best[c] = in[c], where[c] = base + c;
              }
          for (int64_t c = 0; c < C; ++c)
            if (where[c] >= 0) dx[where[c]] += grad[c];
        }
    }
  };
  if (disjoint)
    parallel_for(slabs, body);
  else
    body(0, slabs, 0);
}

}  // namespace patchfed
