#!/usr/bin/env python3
"""torch_mm_peers.py — the torch peers of kfbench_mm on the GPU host, timed in the same run:

  gemm       torch.matmul(a, w.t()) in bf16 / f16 (cuBLAS / cuBLASLt), f32 with TF32 off, and FP8 e4m3
             torch._scaled_mm(a, w.t(), scale_a, scale_b, out_dtype=bf16) at the shapes kfbench_mm uses
  attention  F.scaled_dot_product_attention bf16 [b, h, s, d] through the FLASH_ATTENTION (FA2) and
             CUDNN_ATTENTION backends, causal and not; decode (q_len 1 and 16, GQA via enable_gqa)

TFLOP/s = 2·M·N·K (GEMM) and 4·b·h·q·kv·d, halved for causal prefill (attention); decode GB/s counts the
K and V bytes read. Timing: CUDA events, 10 warm-up calls, median of 20 (2 rotated input sets).

Usage (GPU host):  python3 bench/torch_mm_peers.py [--json=FILE]
"""
import argparse
import json
import statistics
import sys

try:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError as error:
    print("torch_mm_peers: cannot import torch (%s)" % error, file=sys.stderr)
    sys.exit(2)

GEMM = [(4096, 4096, 4096, "bf16"), (8192, 8192, 8192, "bf16"), (4096, 14336, 4096, "bf16"),
        (4096, 4096, 14336, "bf16"), (16384, 4096, 4096, "bf16"), (512, 4096, 4096, "bf16"),
        (1, 4096, 4096, "bf16"), (16, 14336, 4096, "bf16"), (4096, 4096, 4096, "f16"), (4096, 4096, 4096, "f32"),
        (8192, 8192, 8192, "fp8"), (4096, 4096, 4096, "fp8")]
ATTN = [(8, 4096, 4096, 16, 16, 128, False), (8, 4096, 4096, 16, 16, 128, True), (8, 4096, 4096, 32, 8, 64, True),
        (8, 1, 8192, 32, 8, 128, True), (8, 16, 8192, 32, 8, 128, True)]
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def time_ms(fn, sets):
    for i in range(10):
        fn(*sets[i % 2])
    torch.cuda.synchronize()
    samples = []
    for i in range(20):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*sets[i % 2])
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop))
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_mm_peers: no CUDA device", file=sys.stderr)
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    print("torch %s on %s" % (torch.__version__, torch.cuda.get_device_name()))
    for m, n, k, dt in GEMM:
        if dt == "fp8":
            sets = [(torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn),
                     torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn)) for _ in range(2)]
            one = torch.tensor(1.0, device="cuda")
            fn = lambda a, w: torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            peer = "torch._scaled_mm (cuBLASLt)"
        else:
            sets = [(torch.randn(m, k, device="cuda", dtype=DTYPES[dt]), torch.randn(n, k, device="cuda", dtype=DTYPES[dt]))
                    for _ in range(2)]
            fn = lambda a, w: torch.matmul(a, w.t())
            peer = "torch.matmul (cuBLAS)"
        try:
            ms = time_ms(fn, sets)
        except RuntimeError as error:
            print("  gemm %-5s %dx%dx%d: %s" % (dt, m, n, k, str(error).splitlines()[0]))
            continue
        tflops = 2.0 * m * n * k / (ms * 1e-3) / 1e12
        print("  gemm %-5s %-16s %9.4f ms %8.1f TFLOP/s  %s" % (dt, "%dx%dx%d" % (m, n, k), ms, tflops, peer))
        rows.append({"op": "gemm", "dtype": dt, "shape": "%dx%dx%d" % (m, n, k), "ms": ms, "tflops": tflops, "peer": peer})
        del sets
    for b, q, kv, hq, hkv, d, causal in ATTN:
        sets = [(torch.randn(b, hq, q, d, device="cuda", dtype=torch.bfloat16),
                 torch.randn(b, hkv, kv, d, device="cuda", dtype=torch.bfloat16),
                 torch.randn(b, hkv, kv, d, device="cuda", dtype=torch.bfloat16)) for _ in range(2)]
        flops = 4.0 * b * hq * q * kv * d * (0.5 if causal and q == kv else 1.0)
        kv_bytes = 2.0 * b * kv * hkv * d * 2
        shape = "b%d q%d kv%d h%d/%d d%d" % (b, q, kv, hq, hkv, d)
        for name, backend in (("FlashAttention-2 (torch flash)", SDPBackend.FLASH_ATTENTION),
                              ("cuDNN attention", SDPBackend.CUDNN_ATTENTION)):
            # bottom-right causal alignment for q < kv is what kfuse computes; torch's is_causal aligns
            # top-left, so decode (q_len <= 16 over a longer cache) is timed without the mask (a single
            # query sees every key either way; 16 queries differ by <= 15 keys of 8192)
            is_causal = causal and q == kv
            fn = lambda qq, kk, vv: F.scaled_dot_product_attention(qq, kk, vv, is_causal=is_causal, enable_gqa=hq != hkv)
            try:
                with sdpa_kernel(backend):
                    ms = time_ms(fn, sets)
            except RuntimeError as error:
                print("  attention %-26s %-32s: %s" % (shape, name, str(error).splitlines()[0][:100]))
                continue
            print("  attention %-26s %-7s %-32s %9.4f ms %8.1f TFLOP/s %8.1f GB/s (K+V)" % (
                shape, "causal" if causal else "", name, ms, flops / (ms * 1e-3) / 1e12, kv_bytes / (ms * 1e-3) / 1e9))
            rows.append({"op": "attention", "shape": shape, "causal": causal, "peer": name, "ms": ms,
                         "tflops": flops / (ms * 1e-3) / 1e12, "gbps": kv_bytes / (ms * 1e-3) / 1e9})
        del sets
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
