"""Build macros for kernels: nvcc -> fatbin, glslc -> SPIR-V, and embedding any file as a C table.

A build machine without nvcc or glslc still succeeds: the compile step writes an empty output and a
note, the empty file is embedded with size 0, and the backend says "built without ... kernels" at
probe time.
"""

def kf_embed(name, srcs, symbol):
    """Embeds srcs as `const kf_embedded_file symbol[]` in the generated source `name`.c."""
    native.genrule(
        name = name,
        srcs = srcs,
        outs = [name + ".c"],
        cmd = "$(location //tools:embed) $@ %s $(SRCS)" % symbol,
        tools = ["//tools:embed"],
    )

# Architectures of every fatbin: sm_80 machine code (generic tensor-core path), sm_90a (Hopper:
# wgmma, TMA, setmaxnreg need the "a" target) and compute_80 PTX so newer GPUs can JIT.
CUDA_GENCODE = " ".join([
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_80,code=compute_80",
])

def kf_cuda_fatbin(name, src, hdrs = [], defines = []):
    """nvcc -fatbin of one .cu into name.fatbin (empty when nvcc is not installed).

    defines (-D) let one source make several modules, which Bazel then compiles in parallel."""
    native.genrule(
        name = name,
        srcs = [src] + hdrs,
        outs = [name + ".fatbin"],
        cmd = " ".join([
            "NVCC=$$(command -v nvcc || echo /usr/local/cuda/bin/nvcc);",
            "if [ -x \"$$NVCC\" ]; then",
            # nvcc names its temporary files after its PID, and each sandbox runs it as the same PID: modules
            # compiled side by side overwrote each other's files in the shared /tmp (a PTX parse error)
            "  T=$$(mktemp -d) && trap 'rm -rf \"$$T\"' EXIT;",
            "  TMPDIR=$$T \"$$NVCC\" -fatbin -O3 -std=c++17 -I. -I$(GENDIR) %s -Xptxas -warn-spills -Xptxas -warn-lmem-usage -Xfatbin=-compress-all %s" % (CUDA_GENCODE, " ".join(["-D" + d for d in defines])),
            "  -o $@ $(location %s) || exit 1;" % src,
            "else echo 'kfuse: nvcc not found, building without CUDA kernels' >&2; : > $@; fi",
        ]),
    )

def kf_spirv(name, src, hdrs = [], defines = []):
    """glslc of one compute shader into name.spv (empty when glslc is not installed)."""
    native.genrule(
        name = name,
        srcs = [src] + hdrs,
        outs = [name + ".spv"],
        cmd = " ".join([
            "if command -v glslc >/dev/null; then",
            "  glslc -fshader-stage=compute --target-env=vulkan1.2 -O -I. %s" % " ".join(["-D" + d for d in defines]),
            "  -o $@ $(location %s) || exit 1;" % src,
            "else echo 'kfuse: glslc not found, building without Vulkan kernels' >&2; : > $@; fi",
        ]),
    )
