#!/bin/bash
# Installs the Debian/Ubuntu packages that building and testing kfuse needs: Bazel, the OpenCL and
# Vulkan headers and loaders, CPU implementations of both (PoCL, lavapipe) so every backend really
# runs without a GPU, the shader compiler, the Vulkan validation layer and CLBlast.
#
# Idempotent: when everything is installed it asks dpkg once, prints one line and touches nothing
# (no `apt-get update`). Runs as root, or through sudo when that exists.
#
# The CUDA toolkit is optional: with nvcc (on PATH or in /usr/local/cuda/bin) the build embeds CUDA
# kernels; without it the CUDA backend is still built and reports "built without CUDA kernels".
set -euo pipefail

packages=(
  bazel-bootstrap        # Bazel 4.2 (the build)
  pocl-opencl-icd        # OpenCL on the CPU: the OpenCL backend runs in CI
  ocl-icd-opencl-dev     # the OpenCL ICD loader (libOpenCL.so.1)
  opencl-headers
  clinfo
  libclblast-dev         # CLBlast (OpenCL GEMM), opened with dlopen
  libvulkan-dev          # the Vulkan loader (libvulkan.so.1) and headers
  mesa-vulkan-drivers    # lavapipe: Vulkan on the CPU, so the Vulkan backend runs in CI
  glslc                  # GLSL compute shaders -> SPIR-V at build time
  spirv-tools
  vulkan-tools           # vulkaninfo
  vulkan-validationlayers # VK_LAYER_KHRONOS_validation, used by the Vulkan conformance run
  binutils               # readelf: the check that libkfuse.so links no vendor library
  gcc
  g++
)

# One dpkg-query for all packages; unknown packages make it exit nonzero, which is fine here.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for package in "${packages[@]}"; do
  if ! grep -q "^${package} ii" <<<"$installed"; then
    missing+=("$package")
  fi
done

if [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda_note="CUDA toolkit found at /usr/local/cuda (CUDA kernels will be built)"
elif command -v nvcc >/dev/null 2>&1; then
  cuda_note="CUDA toolkit found: $(command -v nvcc) (CUDA kernels will be built)"
else
  cuda_note="CUDA toolkit not found (optional: install it to /usr/local/cuda or put nvcc on PATH to build CUDA kernels)"
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages present; ${cuda_note}"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "bootstrap: missing packages: ${missing[*]}" >&2
  echo "bootstrap: not root and sudo is not installed; install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/kfuse-bootstrap.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
   ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
       apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  echo "bootstrap: apt-get failed while installing: ${missing[*]}" >&2
  exit 1
fi
echo "bootstrap: installed: ${missing[*]}; ${cuda_note}"
