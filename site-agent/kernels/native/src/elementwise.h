// Memory-bound float32 kernels whose stock tfjs cpu versions take generic
// per-element index paths (broadcast binary ops, reductions over a block of
// axes, slices/splits/concats and transposes of rank-5 tensors, softmax).
// Shapes are row-major; every function fully overwrites its output.
#pragma once

#include <cstdint>
#include <vector>

namespace patchfed {

enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2, Div = 3 };
enum class UnaryOp : int { Relu = 0, Step = 1, Square = 2, Sqrt = 3 };

// out[i] = op(x[i]) with the stock kernels' NaN behaviour (relu and step keep
// NaN; step gives 1 for x > 0, else alpha).
void unary_op(UnaryOp op, const float* x, int64_t n, float alpha, float* out);

// out = a (op) b with numpy/tfjs broadcasting; returns nullptr or an error.
const char* binary_broadcast(BinaryOp op, const float* a, const std::vector<int64_t>& ashape, const float* b,
                             const std::vector<int64_t>& bshape, float* out, int64_t out_size);

// out[o][i] = scale * sum_r x[o][r][i] (x viewed as [outer][reduce][inner]),
// accumulated in double like the stock kernel's JS numbers.
void reduce_sum(const float* x, int64_t outer, int64_t reduce, int64_t inner, double scale, float* out);

// Row-major copy of the box [begin, begin + size) of x.
void slice_copy(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& begin,
                const std::vector<int64_t>& size, float* out);

// Joins (or splits) rows: the big tensor is [outer][sum widths], part k is [outer][widths[k]].
void concat_rows(const std::vector<const float*>& parts, const std::vector<int64_t>& widths, int64_t outer, float* out);
void split_rows(const float* x, const std::vector<int64_t>& widths, int64_t outer, const std::vector<float*>& parts);

// out = transpose(x, perm).
void transpose(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& perm, float* out);

// Softmax over the last axis of x viewed as [rows][cols].
void softmax_rows(const float* x, int64_t rows, int64_t cols, float* out);

}  // namespace patchfed
