# Every third-party dependency is found here, once. All come from Debian packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 QUIET CONFIG)
if(NOT TARGET CLI11::CLI11)
  # Debian's libcli11-dev ships the headers only on some releases; fall back to the header path.
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

# LibTorch: Debian's libtorch-dev installs TorchConfig.cmake. Its headers are slow to compile, so only the
# targets that need tensors link it (see common/CMakeLists.txt).
find_package(Torch REQUIRED)
# TorchConfig adds -D_GLIBCXX_USE_CXX11_ABI etc. through TORCH_CXX_FLAGS; keep them on torch users only.
separate_arguments(PROXYKV_TORCH_CXX_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")

if(PROXYKV_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

if(PROXYKV_WITH_UCX)
  find_package(ucx CONFIG)
  if(NOT ucx_FOUND)
    message(FATAL_ERROR "PROXYKV_WITH_UCX=ON but UCX was not found: install libucx-dev "
                        "(scripts/install-deps.sh) or configure with -DPROXYKV_WITH_UCX=OFF")
  endif()
endif()

# Transport (proto/, transport/): protobuf for the envelope, ZeroMQ + cppzmq for the control channel and the
# ZeroMQ data plane, zlib for the CRC-32 of tensor frames.
find_package(Protobuf 3.12 REQUIRED)
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq>=4.3)
pkg_check_modules(CPPZMQ REQUIRED IMPORTED_TARGET cppzmq)
find_package(ZLIB REQUIRED)

# Telemetry (common/telemetry): prometheus-cpp core for the registry and text exposition (its pull Exposer is
# not used: the admin endpoints are cpp-httplib, shared with the target's API server). Debian's cpp-httplib is
# the compiled split build, found through pkg-config, whose flags carry its feature defines.
if(NOT PROXYKV_OFFLINE_TOOLS_ONLY)
  find_package(prometheus-cpp CONFIG REQUIRED)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
endif()
