#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "thread_pool.h"

namespace patchfed {
namespace {

// Below this many output elements a kernel runs on the calling thread: waking
// the pool costs more than streaming a few hundred KB.
constexpr int64_t kParallelGrain = 1 << 16;

void for_rows(int64_t rows, int64_t row_elements, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (rows * row_elements < kParallelGrain || rows < 2)
    fn(0, rows, 0);
  else
    parallel_for(rows, fn);
}

template <BinaryOp OP>
inline float apply(float a, float b) {
  if (OP == BinaryOp::Add) return a + b;
  if (OP == BinaryOp::Sub) return a - b;
  if (OP == BinaryOp::Mul) return a * b;
  return a / b;
}

// One contiguous run of the innermost dimension; IA/IB say whether a and b
// advance (1) or are broadcast (0) along it.
template <BinaryOp OP, int IA, int IB>
void binary_run(const float* __restrict a, const float* __restrict b, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = apply<OP>(a[i * IA], b[i * IB]);
}

template <BinaryOp OP>
void binary_run_dispatch(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  if (sa && sb)
    binary_run<OP, 1, 1>(a, b, out, n);
  else if (sa)
    binary_run<OP, 1, 0>(a, b, out, n);
  else if (sb)
    binary_run<OP, 0, 1>(a, b, out, n);
  else
    binary_run<OP, 0, 0>(a, b, out, n);
}

template <BinaryOp OP>
void binary_nd(const float* a, const float* b, float* out, const std::vector<int64_t>& dims,
               const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) {
  const int rank = static_cast<int>(dims.size());
  const int64_t inner = dims[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; ++d) rows *= dims[d];
  for_rows(rows, inner, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      // Decode the row index into the outer dimensions' offsets.
      int64_t rem = r, oa = 0, ob = 0;
      for (int d = rank - 2; d >= 0; --d) {
        const int64_t idx = rem % dims[d];
        rem /= dims[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      binary_run_dispatch<OP>(a + oa, sa[rank - 1], b + ob, sb[rank - 1], out + r * inner, inner);
    }
  });
}

}  // namespace

const char* binary_broadcast(BinaryOp op, const float* a, const std::vector<int64_t>& ashape, const float* b,
                             const std::vector<int64_t>& bshape, float* out, int64_t out_size) {
  const size_t rank = std::max(ashape.size(), bshape.size());
  std::vector<int64_t> ad(rank, 1), bd(rank, 1);
  std::copy(ashape.begin(), ashape.end(), ad.begin() + (rank - ashape.size()));
  std::copy(bshape.begin(), bshape.end(), bd.begin() + (rank - bshape.size()));
  std::vector<int64_t> od(rank), as(rank), bs(rank);
  int64_t total = 1, astride = 1, bstride = 1;
  for (size_t i = rank; i-- > 0;) {
    if (ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1) return "shapes do not broadcast";
    od[i] = std::max(ad[i], bd[i]);
    as[i] = ad[i] == 1 ? 0 : astride;
    bs[i] = bd[i] == 1 ? 0 : bstride;
    astride *= ad[i];
    bstride *= bd[i];
    total *= od[i];
  }
  if (total != out_size) return "output size does not match the broadcast shape";
  if (total == 0) return nullptr;
  // Drop unit dimensions and merge neighbours whose strides chain for both inputs.
  std::vector<int64_t> dims, sa, sb;
  for (size_t i = 0; i < rank; ++i) {
    if (od[i] == 1) continue;
    if (!dims.empty() && sa.back() == as[i] * od[i] && sb.back() == bs[i] * od[i]) {
      dims.back() *= od[i];
      sa.back() = as[i];
      sb.back() = bs[i];
    } else {
      dims.push_back(od[i]);
      sa.push_back(as[i]);
      sb.push_back(bs[i]);
    }
  }
  if (dims.empty()) dims = {1}, sa = {0}, sb = {0};
  switch (op) {
    case BinaryOp::Add:
      binary_nd<BinaryOp::Add>(a, b, out, dims, sa, sb);
      break;
    case BinaryOp::Sub:
      binary_nd<BinaryOp::Sub>(a, b, out, dims, sa, sb);
      break;
    case BinaryOp::Mul:
      binary_nd<BinaryOp::Mul>(a, b, out, dims, sa, sb);
      break;
    case BinaryOp::Div:
      binary_nd<BinaryOp::Div>(a, b, out, dims, sa, sb);
      break;
  }
  return nullptr;
}

namespace {
template <UnaryOp OP>
void unary_run(const float* __restrict x, int64_t n, float alpha, float* __restrict out) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (OP == UnaryOp::Relu) out[i] = v > 0.0f ? v : (v != v ? v : 0.0f);
    if (OP == UnaryOp::Step) out[i] = v > 0.0f ? 1.0f : (v != v ? v : alpha);
    if (OP == UnaryOp::Square) out[i] = v * v;
    if (OP == UnaryOp::Sqrt) out[i] = std::sqrt(v);
  }
}
}  // namespace

void unary_op(UnaryOp op, const float* x, int64_t n, float alpha, float* out) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  for_rows(chunks, kChunk, [&](int64_t begin, int64_t end, int) {
    const int64_t lo = begin * kChunk, hi = std::min(n, end * kChunk);
    switch (op) {
      case UnaryOp::Relu:
        unary_run<UnaryOp::Relu>(x + lo, hi - lo, alpha, out + lo);
        break;
      case UnaryOp::Step:
        unary_run<UnaryOp::Step>(x + lo, hi - lo, alpha, out + lo);
        break;
      case UnaryOp::Square:
        unary_run<UnaryOp::Square>(x + lo, hi - lo, alpha, out + lo);
        break;
      case UnaryOp::Sqrt:
        unary_run<UnaryOp::Sqrt>(x + lo, hi - lo, alpha, out + lo);
        break;
    }
  });
}

void reduce_sum(const float* x, int64_t outer, int64_t reduce, int64_t inner, double scale, float* out) {
  if (outer * inner == 0) return;
  if (inner == 1) {
    for_rows(outer, reduce, [&](int64_t begin, int64_t end, int) {
      for (int64_t o = begin; o < end; ++o) {
        const float* p = x + o * reduce;
        double s = 0;
        for (int64_t r = 0; r < reduce; ++r) s += p[r];
        out[o] = static_cast<float>(s * scale);
      }
    });
    return;
  }
  if (outer >= kernel_pool().size() || outer * reduce * inner < kParallelGrain) {
    for_rows(outer, reduce * inner, [&](int64_t begin, int64_t end, int) {
      std::vector<double> acc(inner);
      for (int64_t o = begin; o < end; ++o) {
        std::fill(acc.begin(), acc.end(), 0.0);
        const float* p = x + o * reduce * inner;
        for (int64_t r = 0; r < reduce; ++r, p += inner)
          for (int64_t i = 0; i < inner; ++i) acc[i] += p[i];
        for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = static_cast<float>(acc[i] * scale);
      }
    });
    return;
  }
  // Few outputs (e.g. per-channel sums): split the reduced axis into ranges,
  // then add the per-range partial sums in range order (deterministic).
  const int64_t ranges = std::min<int64_t>(reduce, 32);  // fixed: same sums on any thread count
  std::vector<double> partial(static_cast<size_t>(ranges) * outer * inner, 0.0);
  parallel_for(ranges, [&](int64_t rb, int64_t re, int) {
    for (int64_t index = rb; index < re; ++index) {
      int64_t begin, end;
      range_bounds(reduce, ranges, index, &begin, &end);
      double* acc = partial.data() + static_cast<size_t>(index) * outer * inner;
      for (int64_t o = 0; o < outer; ++o) {
        const float* p = x + (o * reduce + begin) * inner;
        double* ao = acc + o * inner;
        for (int64_t r = begin; r < end; ++r, p += inner)
          for (int64_t i = 0; i < inner; ++i) ao[i] += p[i];
      }
    }
  });
  for (int64_t k = 0; k < outer * inner; ++k) {
    double s = 0;
    for (int64_t t = 0; t < ranges; ++t) s += partial[static_cast<size_t>(t) * outer * inner + k];
    out[k] = static_cast<float>(s * scale);
  }
}

void slice_copy(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
                const std::vector<int64_t>& size, float* out) {
  const int rank = static_cast<int>(shape.size());
  // The innermost dimensions copied whole form one contiguous run.
  int64_t run = 1;
  int d = rank - 1;
  while (d >= 0 && begin[d] == 0 && size[d] == shape[d]) run *= shape[d--];
  if (d >= 0) run *= size[d];
  const int outer_rank = d;  // dimensions [0, d) are iterated; dimension d starts the run
  std::vector<int64_t> strides(rank, 1);
  for (int i = rank - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  int64_t base = 0;
  for (int i = 0; i < rank; ++i) base += begin[i] * strides[i];
  int64_t rows = 1;
  for (int i = 0; i < outer_rank; ++i) rows *= size[i];
  if (run == 0 || rows == 0) return;
  for_rows(rows, run, [&](int64_t rb, int64_t re, int) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t rem = r, off = base;
      for (int i = outer_rank - 1; i >= 0; --i) {
        off += (rem % size[i]) * strides[i];
        rem /= size[i];
      }
      std::memcpy(out + r * run, x + off, run * sizeof(float));
    }
  });
}

void concat_rows(const std::vector<const float*>& parts, const std::vector<int64_t>& widths, int64_t outer,
                 float* out) {
  int64_t total = 0;
  for (int64_t w : widths) total += w;
  for_rows(outer, total, [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) {
      float* dst = out + o * total;
      for (size_t k = 0; k < parts.size(); ++k) {
        std::memcpy(dst, parts[k] + o * widths[k], widths[k] * sizeof(float));
        dst += widths[k];
      }
    }
  });
}

void split_rows(const float* x, const std::vector<int64_t>& widths, int64_t outer, const std::vector<float*>& parts) {
  int64_t total = 0;
  for (int64_t w : widths) total += w;
  for_rows(outer, total, [&](int64_t begin, int64_t end, int) {
    for (int64_t o = begin; o < end; ++o) {
      const float* src = x + o * total;
      for (size_t k = 0; k < parts.size(); ++k) {
        std::memcpy(parts[k] + o * widths[k], src, widths[k] * sizeof(float));
        src += widths[k];
      }
    }
  });
}

void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, float* out) {
  const int rank = static_cast<int>(shape.size());
  std::vector<int64_t> xs(rank, 1);
  for (int i = rank - 2; i >= 0; --i) xs[i] = xs[i + 1] * shape[i + 1];
  // Output dimension i walks input stride xs[perm[i]]; merge output neighbours
  // that are also neighbours in the input, and drop unit dimensions.
  std::vector<int64_t> dims, strides;
  for (int i = 0; i < rank; ++i) {
    const int64_t n = shape[perm[i]], s = xs[perm[i]];
    if (n == 1) continue;
    if (!dims.empty() && strides.back() == s * n) {
      dims.back() *= n;
      strides.back() = s;
    } else {
      dims.push_back(n);
      strides.push_back(s);
    }
  }
  if (dims.empty()) dims = {1}, strides = {1};
  const int r = static_cast<int>(dims.size());
  const int64_t inner = dims[r - 1], istride = strides[r - 1];
  int64_t rows = 1;
  for (int i = 0; i < r - 1; ++i) rows *= dims[i];
  for_rows(rows, inner, [&](int64_t begin, int64_t end, int) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t rem = row, off = 0;
      for (int i = r - 2; i >= 0; --i) {
        off += (rem % dims[i]) * strides[i];
        rem /= dims[i];
      }
      float* dst = out + row * inner;
      const float* src = x + off;
      if (istride == 1)
        std::memcpy(dst, src, inner * sizeof(float));
      else
        for (int64_t j = 0; j < inner; ++j) dst[j] = src[j * istride];
    }
  });
}

void softmax_rows(const float* x, int64_t rows, int64_t cols, float* out) {
  for_rows(rows, cols * 8, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = x + r * cols;
      float* o = out + r * cols;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = in[c] > m ? in[c] : m;
      // Same roundings as the stock kernel: float32 difference, exp in double
      // rounded to float32, sum in double rounded to float32, float32 quotient.
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const float d = in[c] - m;
        o[c] = static_cast<float>(std::exp(static_cast<double>(d)));
        s += o[c];
      }
      const float sf = static_cast<float>(s);
      for (int64_t c = 0; c < cols; ++c) o[c] = o[c] / sf;
    }
  });
}

}  // namespace patchfed
