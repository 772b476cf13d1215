{
  "targets": [
    {
      "target_name": "patchfed_conv3d",
      "sources": ["src/addon.cc", "src/conv3d.cc", "src/pool3d.cc", "src/elementwise.cc", "src/matmul.cc", "src/thread_pool.cc"],
      "cflags!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags_cc!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags": ["-O3", "-march=<!(node -p \"process.env.PATCHFED_NATIVE_MARCH || 'native'\")", "-ffp-contract=fast", "-fvisibility=hidden"],
      "cflags_cc": ["-O3", "-fexceptions", "-std=gnu++17", "-march=<!(node -p \"process.env.PATCHFED_NATIVE_MARCH || 'native'\")", "-ffp-contract=fast"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "CLANG_CXX_LANGUAGE_STANDARD": "gnu++17",
        "OTHER_CPLUSPLUSFLAGS": ["-march=<!(node -p \"process.env.PATCHFED_NATIVE_MARCH || 'native'\")", "-ffp-contract=fast"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/O2", "/arch:AVX2"] }
      }
    }
  ]
}
