#!/usr/bin/env python3
"""peer_clock.py — the SM clock an H200 runs at while cuBLAS repeats one GEMM (torch.matmul), in the
steady state, under the power cap (docs/HOPPER_GEMM_NOTES.md, session 23).

NVML's SM clock reads 9-12% above the rate clock64 counts at (tools/wgmma_power_probe.cu), and a GEMM
that runs on every SM leaves no room for a kernel that measures the clock. cuBLAS's mid-range kernels run
128-132 CTAs, so an SM is free: a side stream queues, before the GEMMs, torch.cuda._sleep (one thread
spinning on clock64 for a number of clocks) for ~3 s of settling and then four timed sleeps of 1e8 clocks.
Clocks over CUDA-event time is the clock. The GEMMs are queued after the sleeps, so the sleeps run beside
them (the script checks that the last sleep ended before the last GEMM). With the per-call time this gives
clocks a K block: (time a call - fixed part) x clock / K blocks.

Measured (2026-11-22, H200, PyTorch 2.11, two processes): 512 x 4096 x 8192 bf16 56.3 and 57.0 us a call, SM clock
1.372-1.375 and 1.332-1.334 GHz; 512 x 4096 x 16384 108.9 us, 1.275-1.306 GHz. Queued after the GEMMs instead, the
sleeps run once the launch queue has drained, near the end or after the last GEMM, and read 1.96-1.98 GHz.

Usage (GPU host):  python3 tools/peer_clock.py [MxNxK ...]   (default 512x4096x8192)
"""
import sys

try:
    import torch
except ImportError as error:
    print("peer_clock: cannot import torch (%s)" % error, file=sys.stderr)
    sys.exit(2)

SETTLE_S = 3.0
SLEEP_CLOCKS = 100_000_000


def measure(m, n, k, seconds=6.0):
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        torch.matmul(a, b.t())
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(200):
        torch.matmul(a, b.t())
    end.record()
    end.synchronize()
    calls = max(1, int(seconds * 1e3 / (start.elapsed_time(end) / 200)))
    side, main = torch.cuda.Stream(), torch.cuda.Stream()
    sleeps = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(4)]
    with torch.cuda.stream(side):  # queued first: runs beside the GEMMs from their start
        torch.cuda._sleep(int(SETTLE_S * 1.4e9))
        for begin, finish in sleeps:
            begin.record()
            torch.cuda._sleep(SLEEP_CLOCKS)
            finish.record()
    with torch.cuda.stream(main):
        start.record()
        for _ in range(calls):
            torch.matmul(a, b.t())
        end.record()
    torch.cuda.synchronize()
    ghz = [SLEEP_CLOCKS / (begin.elapsed_time(finish) * 1e-3) / 1e9 for begin, finish in sleeps]
    margin_ms = sleeps[-1][1].elapsed_time(end)
    us = start.elapsed_time(end) * 1e3 / calls
    beside = "" if margin_ms > 0 else "  (the sleeps outlasted the GEMMs: not a steady-state clock)"
    print("cuBLAS bf16 %dx%dx%d: %.2f us a call, %.1f TFLOP/s; SM clock %s GHz%s" %
          (m, n, k, us, 2.0 * m * n * k / us / 1e6, " ".join("%.3f" % g for g in ghz), beside))


def main():
    shapes = sys.argv[1:] or ["512x4096x8192"]
    for shape in shapes:
        m, n, k = (int(x) for x in shape.split("x"))
        measure(m, n, k)


if __name__ == "__main__":
    main()
