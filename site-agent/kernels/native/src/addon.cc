// N-API bindings (C API only, so no node-addon-api dependency).
//
//   conv3dForward(geometry: Int32Array(18), x, filter, y): void
//   conv3dBackpropInput(geometry, dy, filter, dx): void
//   conv3dBackpropFilter(geometry, x, dy, dFilter): void
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

#include "conv3d.h"
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

bool get_geometry(napi_env env, napi_value value, patchfed::ConvGeometry* g) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  napi_typedarray_type type;
  size_t length = 0;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (!is_typed || napi_get_typedarray_info(env, value, &type, &length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_int32_array || length != static_cast<size_t>(patchfed::kGeometryFields)) {
    napi_throw_type_error(env, nullptr, "geometry must be an Int32Array of 18 fields");
    return false;
  }
  const int32_t* v = static_cast<const int32_t*>(ptr);
  int64_t* fields[] = {&g->batch, &g->inD,  &g->inH,      &g->inW,    &g->inC,     &g->fD,
                       &g->fH,    &g->fW,   &g->outC,     &g->sD,     &g->sH,      &g->sW,
                       &g->padFront, &g->padTop, &g->padLeft, &g->outD, &g->outH, &g->outW};
  for (int i = 0; i < patchfed::kGeometryFields; ++i) *fields[i] = v[i];
  if (const char* reason = patchfed::validate_geometry(*g)) {
    napi_throw_range_error(env, nullptr, (std::string("invalid Conv3D geometry: ") + reason).c_str());
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
