// N-API bindings (C API only, so no node-addon-api dependency).
//
//   conv3dForward(geometry: Int32Array(18), x, filter, y): void
//   conv3dBackpropInput(geometry, dy, filter, dx): void
//   conv3dBackpropFilter(geometry, x, dy, dFilter): void
//   maxPool3d(geometry: Int32Array(17), x, y): void
//   maxPool3dGrad(geometry, dy, x, dx): void
//   binaryOp(op 0..3 = add/sub/mul/div, a, aShape: Int32Array, b, bShape, out): void
//   unaryOp(op 0..3 = relu/step/square/sqrt, x, alpha, out): void
//   batchMatMul(a, b, c, dims: Int32Array [batch, batchA, batchB, M, N, K, transposeA, transposeB]): void
//   reduceSum(x, outer, reduce, inner, scale, out): void
//   sliceCopy(x, shape, begin, size, out): void       (shapes as Int32Array)
//   concatRows(parts: Float32Array[], widths: Int32Array, outer, out): void
//   splitRows(x, widths: Int32Array, outer, parts: Float32Array[]): void
//   transpose(x, shape, perm, out): void
//   softmaxRows(x, rows, cols, out): void
//   setWorkspaceLimit(bytes), workspaceLimit(), workspaceReserved(), releaseWorkspace()
//   setThreads(n), threads()
//
// Outputs are caller-allocated Float32Arrays (so tfjs owns ordinary JS memory)
// and are fully overwritten. Calls run synchronously; a process-wide mutex
// serialises them because the workspace and thread pool are shared by every
// Node environment (worker threads) that loads the addon.
#include <node_api.h>

#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "conv3d.h"
#include "elementwise.h"
#include "matmul.h"
#include "pool3d.h"
#include "thread_pool.h"

namespace {

std::mutex g_kernel_mutex;
std::mutex g_env_mutex;
int g_env_count = 0;

#define NAPI_OK_OR_RETURN(env, call)                                   \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error((env), "PATCHFED_NATIVE", "N-API call failed"); \
      return nullptr;                                                  \
    }                                                                  \
  } while (0)

bool get_float32_array(napi_env env, napi_value value, const char* name, float** data, size_t* length) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) {
    napi_throw_type_error(env, nullptr, (std::string(name) + " must be a Float32Array").c_str());
    return false;
  }
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, value, &type, length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_float32_array) {
    napi_throw_type_error(env, nullptr, (std::string(name) + " must be a Float32Array").c_str());
    return false;
  }
  *data = static_cast<float*>(ptr);
  return true;
}

// Reads an Int32Array of exactly `count` fields into int64 values.
bool get_int_fields(napi_env env, napi_value value, int count, int64_t* const* fields) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  napi_typedarray_type type;
  size_t length = 0;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (!is_typed || napi_get_typedarray_info(env, value, &type, &length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_int32_array || length != static_cast<size_t>(count)) {
    napi_throw_type_error(env, nullptr, ("geometry must be an Int32Array of " + std::to_string(count) + " fields").c_str());
    return false;
  }
  const int32_t* v = static_cast<const int32_t*>(ptr);
  for (int i = 0; i < count; ++i) *fields[i] = v[i];
  return true;
}

bool get_geometry(napi_env env, napi_value value, patchfed::ConvGeometry* g) {
  int64_t* fields[] = {&g->batch, &g->inD,  &g->inH,      &g->inW,    &g->inC,     &g->fD,
                       &g->fH,    &g->fW,   &g->outC,     &g->sD,     &g->sH,      &g->sW,
                       &g->padFront, &g->padTop, &g->padLeft, &g->outD, &g->outH, &g->outW};
  if (!get_int_fields(env, value, patchfed::kGeometryFields, fields)) return false;
  if (const char* reason = patchfed::validate_geometry(*g)) {
    napi_throw_range_error(env, nullptr, (std::string("invalid Conv3D geometry: ") + reason).c_str());
    return false;
  }
  return true;
}

bool get_pool_geometry(napi_env env, napi_value value, patchfed::PoolGeometry* g) {
  int64_t* fields[] = {&g->batch, &g->inD, &g->inH, &g->inW, &g->channels, &g->fD,  &g->fH,  &g->fW, &g->sD,
                       &g->sH,    &g->sW,  &g->padFront, &g->padTop, &g->padLeft, &g->outD, &g->outH, &g->outW};
  if (!get_int_fields(env, value, patchfed::kPoolGeometryFields, fields)) return false;
  if (const char* reason = patchfed::validate_pool_geometry(*g)) {
    napi_throw_range_error(env, nullptr, (std::string("invalid MaxPool3D geometry: ") + reason).c_str());
    return false;
  }
  return true;
}

bool check_length(napi_env env, const char* name, size_t actual, int64_t expected) {
  if (static_cast<int64_t>(actual) != expected) {
    std::string msg = std::string(name) + " has " + std::to_string(actual) + " elements, geometry needs " +
                      std::to_string(expected);
    napi_throw_range_error(env, nullptr, msg.c_str());
    return false;
  }
  return true;
}

enum class Kind { Forward, BackpropInput, BackpropFilter };

napi_value run_conv(napi_env env, napi_callback_info info, Kind kind) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc != 4) {
    napi_throw_type_error(env, nullptr, "expected (geometry, a, b, out)");
    return nullptr;
  }
  patchfed::ConvGeometry g;
  if (!get_geometry(env, argv[0], &g)) return nullptr;
  float *a, *b, *out;
  size_t la, lb, lo;
  const char* names[3][3] = {{"x", "filter", "y"}, {"dy", "filter", "dx"}, {"x", "dy", "dFilter"}};
  const char* const* nm = names[static_cast<int>(kind)];
  if (!get_float32_array(env, argv[1], nm[0], &a, &la) || !get_float32_array(env, argv[2], nm[1], &b, &lb) ||
      !get_float32_array(env, argv[3], nm[2], &out, &lo))
    return nullptr;
  const int64_t in = patchfed::input_elements(g), flt = patchfed::filter_elements(g),
                outn = patchfed::output_elements(g);
  bool ok;
  switch (kind) {
    case Kind::Forward:
      ok = check_length(env, nm[0], la, in) && check_length(env, nm[1], lb, flt) && check_length(env, nm[2], lo, outn);
      break;
    case Kind::BackpropInput:
      ok = check_length(env, nm[0], la, outn) && check_length(env, nm[1], lb, flt) && check_length(env, nm[2], lo, in);
      break;
    default:
      ok = check_length(env, nm[0], la, in) && check_length(env, nm[1], lb, outn) && check_length(env, nm[2], lo, flt);
  }
  if (!ok) return nullptr;
  // The output must not alias an input: the kernels read inputs while writing it.
  if (out == a || out == b) {
    napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
    return nullptr;
  }
  try {
    std::lock_guard<std::mutex> lock(g_kernel_mutex);
    switch (kind) {
      case Kind::Forward:
        patchfed::conv3d_forward(g, a, b, out);
        break;
      case Kind::BackpropInput:
        patchfed::conv3d_backprop_input(g, a, b, out);
        break;
      default:
        patchfed::conv3d_backprop_filter(g, a, b, out);
    }
  } catch (const std::bad_alloc&) {
    napi_throw_error(env, "PATCHFED_NATIVE_OOM", "native Conv3D workspace allocation failed");
  } catch (const std::exception& e) {
    napi_throw_error(env, "PATCHFED_NATIVE", e.what());
  }
  return nullptr;
}

napi_value Conv3dForward(napi_env env, napi_callback_info info) { return run_conv(env, info, Kind::Forward); }
napi_value Conv3dBackpropInput(napi_env env, napi_callback_info info) {
  return run_conv(env, info, Kind::BackpropInput);
}
napi_value Conv3dBackpropFilter(napi_env env, napi_callback_info info) {
  return run_conv(env, info, Kind::BackpropFilter);
}

napi_value run_pool(napi_env env, napi_callback_info info, bool grad) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  const size_t want = grad ? 4 : 3;
  if (argc != want) {
    napi_throw_type_error(env, nullptr, grad ? "expected (geometry, dy, x, dx)" : "expected (geometry, x, y)");
    return nullptr;
  }
  patchfed::PoolGeometry g;
  if (!get_pool_geometry(env, argv[0], &g)) return nullptr;
  const int64_t in = patchfed::pool_input_elements(g), outn = patchfed::pool_output_elements(g);
  float *a, *b, *c = nullptr;
  size_t la, lb, lc = 0;
  if (grad) {
    if (!get_float32_array(env, argv[1], "dy", &a, &la) || !get_float32_array(env, argv[2], "x", &b, &lb) ||
        !get_float32_array(env, argv[3], "dx", &c, &lc) || !check_length(env, "dy", la, outn) ||
        !check_length(env, "x", lb, in) || !check_length(env, "dx", lc, in))
      return nullptr;
    if (c == a || c == b) {
      napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
      return nullptr;
    }
  } else {
    if (!get_float32_array(env, argv[1], "x", &a, &la) || !get_float32_array(env, argv[2], "y", &b, &lb) ||
        !check_length(env, "x", la, in) || !check_length(env, "y", lb, outn))
      return nullptr;
    if (a == b) {
      napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
      return nullptr;
    }
  }
  try {
    std::lock_guard<std::mutex> lock(g_kernel_mutex);
    if (grad)
      patchfed::max_pool3d_grad(g, a, b, c);
    else
      patchfed::max_pool3d(g, a, b);
  } catch (const std::exception& e) {
    napi_throw_error(env, "PATCHFED_NATIVE", e.what());
  }
  return nullptr;
}

napi_value MaxPool3d(napi_env env, napi_callback_info info) { return run_pool(env, info, false); }
napi_value MaxPool3dGrad(napi_env env, napi_callback_info info) { return run_pool(env, info, true); }

// ---- memory-bound kernels -------------------------------------------------

bool get_int_vector(napi_env env, napi_value value, const char* name, std::vector<int64_t>* out) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  napi_typedarray_type type;
  size_t length = 0;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (!is_typed || napi_get_typedarray_info(env, value, &type, &length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_int32_array || length > 16) {
    napi_throw_type_error(env, nullptr, (std::string(name) + " must be an Int32Array of at most 16 entries").c_str());
    return false;
  }
  const int32_t* v = static_cast<const int32_t*>(ptr);
  out->assign(v, v + length);
  for (int64_t d : *out)
    if (d < 0) {
      napi_throw_range_error(env, nullptr, (std::string(name) + " entries must be non-negative").c_str());
      return false;
    }
  return true;
}

bool get_count(napi_env env, napi_value value, const char* name, int64_t* out) {
  double v;
  if (napi_get_value_double(env, value, &v) != napi_ok || !(v >= 0) || v > 9e15 || v != static_cast<int64_t>(v)) {
    napi_throw_range_error(env, nullptr, (std::string(name) + " must be a non-negative integer").c_str());
    return false;
  }
  *out = static_cast<int64_t>(v);
  return true;
}

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v) p *= d;
  return p;
}

bool get_float32_list(napi_env env, napi_value value, const char* name, std::vector<float*>* out,
                      std::vector<size_t>* lengths) {
  bool is_array = false;
  napi_is_array(env, value, &is_array);
  uint32_t n = 0;
  if (!is_array || napi_get_array_length(env, value, &n) != napi_ok || n == 0 || n > 100000) {
    napi_throw_type_error(env, nullptr, (std::string(name) + " must be a non-empty array of Float32Array").c_str());
    return false;
  }
  out->resize(n);
  lengths->resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value item;
    if (napi_get_element(env, value, i, &item) != napi_ok) return false;
    if (!get_float32_array(env, item, name, &(*out)[i], &(*lengths)[i])) return false;
  }
  return true;
}

#define ARGS(n)                                                               \
  size_t argc = n;                                                            \
  napi_value argv[n];                                                         \
  NAPI_OK_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr)); \
  if (argc != n) {                                                            \
    napi_throw_type_error(env, nullptr, "wrong number of arguments");         \
    return nullptr;                                                           \
  }

napi_value BinaryOpFn(napi_env env, napi_callback_info info) {
  ARGS(6);
  int64_t op;
  std::vector<int64_t> ashape, bshape;
  float *a, *b, *out;
  size_t la, lb, lo;
  if (!get_count(env, argv[0], "op", &op) || !get_float32_array(env, argv[1], "a", &a, &la) ||
      !get_int_vector(env, argv[2], "aShape", &ashape) || !get_float32_array(env, argv[3], "b", &b, &lb) ||
      !get_int_vector(env, argv[4], "bShape", &bshape) || !get_float32_array(env, argv[5], "out", &out, &lo))
    return nullptr;
  if (op > 3) {
    napi_throw_range_error(env, nullptr, "op must be 0..3");
    return nullptr;
  }
  if (!check_length(env, "a", la, product(ashape)) || !check_length(env, "b", lb, product(bshape))) return nullptr;
  // Broadcasting reads inputs at other positions than it writes: no aliasing.
  if (out == a || out == b) {
    napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  if (const char* err = patchfed::binary_broadcast(static_cast<patchfed::BinaryOp>(op), a, ashape, b, bshape, out,
                                                   static_cast<int64_t>(lo)))
    napi_throw_range_error(env, nullptr, err);
  return nullptr;
}

napi_value UnaryOpFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t op;
  float *x, *out;
  size_t lx, lo;
  double alpha;
  if (!get_count(env, argv[0], "op", &op) || !get_float32_array(env, argv[1], "x", &x, &lx) ||
      napi_get_value_double(env, argv[2], &alpha) != napi_ok || !get_float32_array(env, argv[3], "out", &out, &lo))
    return nullptr;
  if (op > 3) {
    napi_throw_range_error(env, nullptr, "op must be 0..3");
    return nullptr;
  }
  if (!check_length(env, "out", lo, static_cast<int64_t>(lx))) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::unary_op(static_cast<patchfed::UnaryOp>(op), x, static_cast<int64_t>(lx), static_cast<float>(alpha), out);
  return nullptr;
}

napi_value BatchMatMulFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  float *a, *b, *c;
  size_t la, lb, lc;
  std::vector<int64_t> d;
  if (!get_float32_array(env, argv[0], "a", &a, &la) || !get_float32_array(env, argv[1], "b", &b, &lb) ||
      !get_float32_array(env, argv[2], "c", &c, &lc) || !get_int_vector(env, argv[3], "dims", &d))
    return nullptr;
  if (d.size() != 8) {
    napi_throw_range_error(env, nullptr, "dims must be [batch, batchA, batchB, M, N, K, transposeA, transposeB]");
    return nullptr;
  }
  const int64_t batch = d[0], batchA = d[1], batchB = d[2], M = d[3], N = d[4], K = d[5];
  if ((batchA != batch && batchA != 1) || (batchB != batch && batchB != 1) || batch < 1) {
    napi_throw_range_error(env, nullptr, "batch operands must have the batch size or 1");
    return nullptr;
  }
  if (!check_length(env, "a", la, batchA * M * K) || !check_length(env, "b", lb, batchB * K * N) ||
      !check_length(env, "c", lc, batch * M * N))
    return nullptr;
  if (c == a || c == b) {
    napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
    return nullptr;
  }
  try {
    std::lock_guard<std::mutex> lock(g_kernel_mutex);
    patchfed::batch_matmul(a, b, c, batch, batchA, batchB, M, N, K, d[6] != 0, d[7] != 0);
  } catch (const std::bad_alloc&) {
    napi_throw_error(env, "PATCHFED_NATIVE_OOM", "native matmul packing allocation failed");
  }
  return nullptr;
}

napi_value ReduceSumFn(napi_env env, napi_callback_info info) {
  ARGS(6);
  float *x, *out;
  size_t lx, lo;
  int64_t outer, reduce, inner;
  double scale;
  if (!get_float32_array(env, argv[0], "x", &x, &lx) || !get_count(env, argv[1], "outer", &outer) ||
      !get_count(env, argv[2], "reduce", &reduce) || !get_count(env, argv[3], "inner", &inner) ||
      napi_get_value_double(env, argv[4], &scale) != napi_ok || !get_float32_array(env, argv[5], "out", &out, &lo))
    return nullptr;
  if (!check_length(env, "x", lx, outer * reduce * inner) || !check_length(env, "out", lo, outer * inner)) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::reduce_sum(x, outer, reduce, inner, scale, out);
  return nullptr;
}

napi_value SliceCopyFn(napi_env env, napi_callback_info info) {
  ARGS(5);
  float *x, *out;
  size_t lx, lo;
  std::vector<int64_t> shape, begin, size;
  if (!get_float32_array(env, argv[0], "x", &x, &lx) || !get_int_vector(env, argv[1], "shape", &shape) ||
      !get_int_vector(env, argv[2], "begin", &begin) || !get_int_vector(env, argv[3], "size", &size) ||
      !get_float32_array(env, argv[4], "out", &out, &lo))
    return nullptr;
  if (begin.size() != shape.size() || size.size() != shape.size() || shape.empty()) {
    napi_throw_range_error(env, nullptr, "shape, begin and size must have the same non-zero rank");
    return nullptr;
  }
  for (size_t i = 0; i < shape.size(); ++i)
    if (begin[i] + size[i] > shape[i]) {
      napi_throw_range_error(env, nullptr, "slice exceeds the tensor");
      return nullptr;
    }
  if (!check_length(env, "x", lx, product(shape)) || !check_length(env, "out", lo, product(size))) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::slice_copy(x, shape, begin, size, out);
  return nullptr;
}

napi_value ConcatRowsFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  std::vector<float*> parts;
  std::vector<size_t> lengths;
  std::vector<int64_t> widths;
  int64_t outer;
  float* out;
  size_t lo;
  if (!get_float32_list(env, argv[0], "parts", &parts, &lengths)) return nullptr;
  // widths may be longer than 16 entries: read them as a plain list of numbers.
  bool is_typed = false;
  napi_is_typedarray(env, argv[1], &is_typed);
  napi_typedarray_type type;
  size_t wl = 0;
  void* wp = nullptr;
  napi_value wb;
  size_t wo = 0;
  if (!is_typed || napi_get_typedarray_info(env, argv[1], &type, &wl, &wp, &wb, &wo) != napi_ok ||
      type != napi_int32_array || wl != parts.size()) {
    napi_throw_type_error(env, nullptr, "widths must be an Int32Array with one entry per part");
    return nullptr;
  }
  widths.assign(static_cast<int32_t*>(wp), static_cast<int32_t*>(wp) + wl);
  if (!get_count(env, argv[2], "outer", &outer) || !get_float32_array(env, argv[3], "out", &out, &lo)) return nullptr;
  int64_t total = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    if (widths[k] < 0 || !check_length(env, "part", lengths[k], outer * widths[k])) {
      if (widths[k] < 0) napi_throw_range_error(env, nullptr, "widths must be non-negative");
      return nullptr;
    }
    if (parts[k] == out) {
      napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
      return nullptr;
    }
    total += widths[k];
  }
  if (!check_length(env, "out", lo, outer * total)) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::concat_rows(std::vector<const float*>(parts.begin(), parts.end()), widths, outer, out);
  return nullptr;
}

napi_value SplitRowsFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  float* x;
  size_t lx;
  int64_t outer;
  std::vector<float*> parts;
  std::vector<size_t> lengths;
  if (!get_float32_array(env, argv[0], "x", &x, &lx)) return nullptr;
  bool is_typed = false;
  napi_is_typedarray(env, argv[1], &is_typed);
  napi_typedarray_type type;
  size_t wl = 0;
  void* wp = nullptr;
  napi_value wb;
  size_t wo = 0;
  if (!is_typed || napi_get_typedarray_info(env, argv[1], &type, &wl, &wp, &wb, &wo) != napi_ok ||
      type != napi_int32_array) {
    napi_throw_type_error(env, nullptr, "widths must be an Int32Array");
    return nullptr;
  }
  std::vector<int64_t> widths(static_cast<int32_t*>(wp), static_cast<int32_t*>(wp) + wl);
  if (!get_count(env, argv[2], "outer", &outer) || !get_float32_list(env, argv[3], "parts", &parts, &lengths))
    return nullptr;
  if (parts.size() != widths.size()) {
    napi_throw_range_error(env, nullptr, "one width per part");
    return nullptr;
  }
  int64_t total = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    if (widths[k] < 0) {
      napi_throw_range_error(env, nullptr, "widths must be non-negative");
      return nullptr;
    }
    if (!check_length(env, "part", lengths[k], outer * widths[k])) return nullptr;
    if (parts[k] == x) {
      napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
      return nullptr;
    }
    total += widths[k];
  }
  if (!check_length(env, "x", lx, outer * total)) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::split_rows(x, widths, outer, parts);
  return nullptr;
}

napi_value TransposeFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  float *x, *out;
  size_t lx, lo;
  std::vector<int64_t> shape, perm;
  if (!get_float32_array(env, argv[0], "x", &x, &lx) || !get_int_vector(env, argv[1], "shape", &shape) ||
      !get_int_vector(env, argv[2], "perm", &perm) || !get_float32_array(env, argv[3], "out", &out, &lo))
    return nullptr;
  std::vector<bool> seen(shape.size(), false);
  bool ok = perm.size() == shape.size() && !shape.empty();
  for (int64_t p : perm) {
    if (!ok || p >= static_cast<int64_t>(shape.size()) || seen[p]) {
      ok = false;
      break;
    }
    seen[p] = true;
  }
  if (!ok) {
    napi_throw_range_error(env, nullptr, "perm must be a permutation of the shape's axes");
    return nullptr;
  }
  if (!check_length(env, "x", lx, product(shape)) || !check_length(env, "out", lo, product(shape))) return nullptr;
  if (out == x) {
    napi_throw_error(env, "PATCHFED_NATIVE", "output array must not alias an input");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  if (product(shape) > 0) patchfed::transpose(x, shape, perm, out);
  return nullptr;
}

napi_value SoftmaxRowsFn(napi_env env, napi_callback_info info) {
  ARGS(4);
  float *x, *out;
  size_t lx, lo;
  int64_t rows, cols;
  if (!get_float32_array(env, argv[0], "x", &x, &lx) || !get_count(env, argv[1], "rows", &rows) ||
      !get_count(env, argv[2], "cols", &cols) || !get_float32_array(env, argv[3], "out", &out, &lo))
    return nullptr;
  if (!check_length(env, "x", lx, rows * cols) || !check_length(env, "out", lo, rows * cols)) return nullptr;
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  if (cols > 0) patchfed::softmax_rows(x, rows, cols, out);
  return nullptr;
}

bool get_number_arg(napi_env env, napi_callback_info info, double* value) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 1 ||
      napi_get_value_double(env, argv[0], value) != napi_ok) {
    napi_throw_type_error(env, nullptr, "expected one number");
    return false;
  }
  return true;
}

napi_value make_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

napi_value SetWorkspaceLimit(napi_env env, napi_callback_info info) {
  double bytes;
  if (!get_number_arg(env, info, &bytes)) return nullptr;
  if (!(bytes >= 0) || bytes > 1e15) {
    napi_throw_range_error(env, nullptr, "workspace limit must be a non-negative number of bytes");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::set_workspace_limit(static_cast<size_t>(bytes));
  return nullptr;
}

napi_value WorkspaceLimit(napi_env env, napi_callback_info) {
  return make_number(env, static_cast<double>(patchfed::workspace_limit()));
}

napi_value WorkspaceReserved(napi_env env, napi_callback_info) {
  return make_number(env, static_cast<double>(patchfed::workspace_reserved()));
}

napi_value ReleaseWorkspace(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::release_workspace();
  return nullptr;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  double n;
  if (!get_number_arg(env, info, &n)) return nullptr;
  if (!(n >= 1 && n <= 256) || n != static_cast<int>(n)) {
    napi_throw_range_error(env, nullptr, "thread count must be an integer from 1 to 256");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_kernel_mutex);
  patchfed::set_kernel_threads(static_cast<int>(n));
  return nullptr;
}

napi_value Threads(napi_env env, napi_callback_info) {
  return make_number(env, static_cast<double>(patchfed::kernel_threads()));
}

void cleanup_env(void*) {
  std::lock_guard<std::mutex> env_lock(g_env_mutex);
  if (--g_env_count == 0) {
    std::lock_guard<std::mutex> lock(g_kernel_mutex);
    patchfed::shutdown_kernel_pool();
    patchfed::release_workspace();
  }
}

}  // namespace

NAPI_MODULE_INIT() {
  {
    std::lock_guard<std::mutex> lock(g_env_mutex);
    ++g_env_count;
  }
  napi_add_env_cleanup_hook(env, cleanup_env, nullptr);
  napi_property_descriptor props[] = {
      {"conv3dForward", nullptr, Conv3dForward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv3dBackpropInput", nullptr, Conv3dBackpropInput, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv3dBackpropFilter", nullptr, Conv3dBackpropFilter, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPool3d", nullptr, MaxPool3d, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPool3dGrad", nullptr, MaxPool3dGrad, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"binaryOp", nullptr, BinaryOpFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"unaryOp", nullptr, UnaryOpFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchMatMul", nullptr, BatchMatMulFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"reduceSum", nullptr, ReduceSumFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sliceCopy", nullptr, SliceCopyFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"concatRows", nullptr, ConcatRowsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"splitRows", nullptr, SplitRowsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"transpose", nullptr, TransposeFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"softmaxRows", nullptr, SoftmaxRowsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setWorkspaceLimit", nullptr, SetWorkspaceLimit, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"workspaceLimit", nullptr, WorkspaceLimit, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"workspaceReserved", nullptr, WorkspaceReserved, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"releaseWorkspace", nullptr, ReleaseWorkspace, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
