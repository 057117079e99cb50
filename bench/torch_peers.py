#!/usr/bin/env python3
"""torch_peers.py — times torch on the GPU host at the bf16 shapes kfbench measures, so kfuse's ops can
be compared with their torch peers measured in the same run (tools/gpu_stage.sh runs it right after
kfbench; bench/combine.py joins the two JSON files into one table).

Peers (each timed eagerly and through torch.compile, default mode, static shapes):
  rmsnorm    x * rsqrt(mean(x^2) + eps) * w in f32 (x.float() ... .to(bf16)), as kfuse computes it;
             weight+residual: h = (x + r) rounded to bf16, returns (h, rmsnorm(h))
  layernorm  F.layer_norm(x, w, b); weight+bias+residual: h = x + r, returns (h, layer_norm(h))
  rope       NeoX rotation of q and k, cos/sin computed inside from int32 positions in f32
             (inv_freq = exp2(-(2i/d) * log2(theta))), returning the rotated q and k;
             packed-qkv: q and k are strided views of one [tokens, 48, 128] QKV tensor;
             separate-qk: contiguous q [tokens, 32, 128] and k [tokens, 8, 128]
  swiglu     F.silu(g) * u;                       fused-input: g, u = x.chunk(2, -1) of [rows, 2I]
  geglu      F.gelu(g, approximate="tanh") * u;   two-tensors: g and u separate [rows, I]
  softmax    torch.softmax(x, -1); scale+mask: torch.softmax(x * 0.125 + mask, -1), mask full size
  copy       dst.copy_(src) of 1 GiB

Bytes counted (exactly as kfbench counts them): the minimum each op must move, every input read once
and every output written once, whatever the implementation really moves:
  rmsnorm    x read + y written + weight read            (+ residual read + residual_out written)
  layernorm  x read + y written + weight + bias read     (+ residual read + residual_out written)
  rope       q and k read + q and k written + positions (int32) read; v is not touched
  swiglu     gate + up read + out written (geglu the same)
  softmax    x read + y written                          (+ mask read)
  copy       bytes read + bytes written
GB/s = bytes / median time per launch / 1e9.

Method: CUDA events around batches of launches grown to >= 2 ms GPU time (5 warm-up launches, the
median of 20 batches, like kfbench). Each batch is queued behind a GPU sleep that outlasts the host's
time to queue it, so Python and torch.compile's launch overhead is not counted (kfbench's C launches
cost the host a few microseconds; the GPU time is what both measure). Inputs are random (torch.randn);
>= 2 input sets are rotated, and more until >= 240 MB (4x the H200's 60 MB L2) is touched.

Usage (GPU host):  python3 bench/torch_peers.py --json=torch.json [--budget=150] [--quick]
Exits 2 with a message when torch or a CUDA device is missing.
"""
import argparse
import datetime
import json
import math
import statistics
import sys
import time

ROTATION_BYTES = 4 * 60 * 1000 * 1000
MAX_SETS = 8
MIN_BATCH_MS = 2.0
MAX_BATCH = 256
EPS = 1e-6
ROPE_THETA = 10000.0
ROPE_Q_HEADS, ROPE_K_HEADS, ROPE_V_HEADS, ROPE_HEAD_DIM = 32, 8, 8, 128
ROPE_SEQUENCE_LEN = 4096
SOFTMAX_SCALE = 0.125
COPY_BYTES = 1 << 30


def fail(message):
    print("torch_peers: " + message, file=sys.stderr)
    sys.exit(2)


try:
    import torch
    import torch.nn.functional as F
except ImportError as error:
    fail("cannot import torch (%s); nothing to measure" % error)


# ---- the peers ------------------------------------------------------------------------------------

def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS) * w.float()).to(x.dtype)


def rmsnorm_residual(x, r, w):
    h = (x.float() + r.float()).to(x.dtype)
    return h, rmsnorm(h, w)


def layernorm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def layernorm_residual(x, r, w, b):
    h = x + r
    return h, F.layer_norm(h, (h.shape[-1],), w, b, EPS)


def rope_neox(q, k, positions):
    rotary_dim = q.shape[-1]
    half = rotary_dim // 2
    pair = torch.arange(half, device=q.device, dtype=torch.float32)
    inv_freq = torch.exp2(-(2.0 * pair / rotary_dim) * math.log2(ROPE_THETA))
    angle = positions.float()[:, None] * inv_freq[None, :]
    cos = angle.cos()[:, None, :]
    sin = angle.sin()[:, None, :]

    def rotate(x):
        xf = x.float()
        x1, x2 = xf[..., :half], xf[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


def swiglu_fused(x):
    g, u = x.chunk(2, dim=-1)
    return F.silu(g) * u


def swiglu(g, u):
    return F.silu(g) * u


def geglu_fused(x):
    g, u = x.chunk(2, dim=-1)
    return F.gelu(g, approximate="tanh") * u


def geglu(g, u):
    return F.gelu(g, approximate="tanh") * u


def softmax(x):
    return torch.softmax(x, dim=-1)


def softmax_mask(x, mask):
    return torch.softmax(x * SOFTMAX_SCALE + mask, dim=-1)


# ---- cases ----------------------------------------------------------------------------------------
# (op, variant, shape (rows, cols; rope: tokens)). Each op's headline case comes first, so that when the
# time budget runs out the cases that matter most are already measured.
CASES = [
    ("rmsnorm", "weight", (16384, 8192)),
    ("rmsnorm", "weight+residual", (16384, 8192)),
    ("layernorm", "weight+bias", (16384, 8192)),
    ("layernorm", "weight+bias+residual", (16384, 8192)),
    ("rope", "packed-qkv", (32768, 0)),
    ("rope", "separate-qk", (32768, 0)),
    ("swiglu", "fused-input", (16384, 14336)),
    ("swiglu", "two-tensors", (16384, 14336)),
    ("geglu", "fused-input", (16384, 14336)),
    ("geglu", "two-tensors", (16384, 14336)),
    ("softmax", "plain", (16384, 8192)),
    ("softmax", "scale+mask", (16384, 8192)),
    ("softmax", "plain", (4096, 32768)),
    ("rmsnorm", "weight", (4096, 4096)),
    ("rmsnorm", "weight", (16384, 4096)),
    ("rmsnorm", "weight", (32768, 8192)),
    ("rmsnorm", "weight+residual", (4096, 4096)),
    ("rmsnorm", "weight+residual", (16384, 4096)),
    ("rmsnorm", "weight+residual", (32768, 8192)),
    ("layernorm", "weight+bias", (4096, 4096)),
    ("layernorm", "weight+bias", (16384, 4096)),
    ("layernorm", "weight+bias", (32768, 8192)),
]


def shape_text(op, shape):
    if op == "rope":
        return "%dx(%d+%d)x%d" % (shape[0], ROPE_Q_HEADS, ROPE_K_HEADS, ROPE_HEAD_DIM)
    return "%dx%d" % shape


def shape_dims(op, shape):
    if op == "rope":
        return [shape[0], ROPE_Q_HEADS, ROPE_K_HEADS, ROPE_HEAD_DIM]
    return list(shape)


def make_case(op, variant, shape, dtype, device):
    """Returns (function, make_inputs, bytes per launch, bytes per input set)."""
    rows, cols = shape
    size = torch.tensor([], dtype=dtype).element_size()

    def rand(*dims):
        return torch.randn(*dims, device=device, dtype=dtype)

    if op in ("rmsnorm", "layernorm"):
        residual = variant.endswith("+residual")
        matrix = rows * cols * size
        per_set = (4 if residual else 2) * matrix
        total = per_set + (1 if op == "rmsnorm" else 2) * cols * size
        weight, bias = rand(cols), rand(cols)
        if op == "rmsnorm":
            fn = rmsnorm_residual if residual else rmsnorm
            extra = (weight,)
        else:
            fn = layernorm_residual if residual else layernorm
            extra = (weight, bias)

        def inputs():
            return ((rand(rows, cols), rand(rows, cols)) if residual else (rand(rows, cols),)) + extra

        return fn, inputs, total, per_set
    if op == "rope":
        tokens = rows
        qk = tokens * (ROPE_Q_HEADS + ROPE_K_HEADS) * ROPE_HEAD_DIM * size
        positions = (torch.arange(tokens, device=device, dtype=torch.int32) % ROPE_SEQUENCE_LEN).contiguous()

        def inputs():
            if variant == "packed-qkv":
                qkv = rand(tokens, ROPE_Q_HEADS + ROPE_K_HEADS + ROPE_V_HEADS, ROPE_HEAD_DIM)
                return (qkv[:, :ROPE_Q_HEADS], qkv[:, ROPE_Q_HEADS:ROPE_Q_HEADS + ROPE_K_HEADS], positions)
            return (rand(tokens, ROPE_Q_HEADS, ROPE_HEAD_DIM), rand(tokens, ROPE_K_HEADS, ROPE_HEAD_DIM), positions)

        return rope_neox, inputs, 2 * qk + tokens * 4, 2 * qk
    if op in ("swiglu", "geglu"):
        matrix = rows * cols * size
        fused = variant == "fused-input"
        if op == "swiglu":
            fn = swiglu_fused if fused else swiglu
        else:
            fn = geglu_fused if fused else geglu

        def inputs():
            return (rand(rows, 2 * cols),) if fused else (rand(rows, cols), rand(rows, cols))

        return fn, inputs, 3 * matrix, 3 * matrix
    if op == "softmax":
        matrix = rows * cols * size
        masked = variant == "scale+mask"

        def inputs():
            return (rand(rows, cols), rand(rows, cols)) if masked else (rand(rows, cols),)

        return (softmax_mask if masked else softmax), inputs, (3 if masked else 2) * matrix, \
            (3 if masked else 2) * matrix
    raise ValueError(op)


# ---- timing ---------------------------------------------------------------------------------------

class Timer:
    """Times batches of launches with CUDA events, each batch queued behind a GPU sleep that lasts
    longer than queueing the batch takes the host."""

    def __init__(self, warmup, runs):
        self.warmup = warmup
        self.runs = runs
        self.sleep = getattr(torch.cuda, "_sleep", None)
        self.cycles_per_ms = 0.0
        if self.sleep is not None:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.sleep(1000)  # loads the kernel
            start.record()
            self.sleep(10_000_000)
            end.record()
            end.synchronize()
            self.cycles_per_ms = 10_000_000 / max(start.elapsed_time(end), 1e-3)

    def _batch(self, fn, sets, batch, next_set, host_ms_per_launch):
        """Returns (GPU ms of the batch, host ms spent queueing it, next set)."""
        if self.sleep is not None:
            self.sleep(int(self.cycles_per_ms * (1.5 * host_ms_per_launch * batch + 0.2)))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        host_start = time.perf_counter()
        start.record()
        for _ in range(batch):
            fn(*sets[next_set % len(sets)])
            next_set += 1
        end.record()
        host_ms = (time.perf_counter() - host_start) * 1e3
        end.synchronize()
        return start.elapsed_time(end), host_ms, next_set

    def time(self, fn, sets):
        """Returns (median ms per launch, launches per batch)."""
        next_set = 0
        for _ in range(self.warmup):
            fn(*sets[next_set % len(sets)])
            next_set += 1
        torch.cuda.synchronize()
        # The first batch (one launch, behind a 1 ms sleep) calibrates the batch size and the host's
        # queueing time per launch; every later batch refreshes the latter.
        ms, host_ms, next_set = self._batch(fn, sets, 1, next_set, 1.0)
        host_ms_per_launch = host_ms
        batch = 1
        while batch < MAX_BATCH and ms * batch < MIN_BATCH_MS:
            batch *= 2
        samples = []
        for _ in range(self.runs):
            ms, host_ms, next_set = self._batch(fn, sets, batch, next_set, host_ms_per_launch)
            host_ms_per_launch = max(host_ms_per_launch, host_ms / batch)
            samples.append(ms / batch)
        return statistics.median(samples), batch


# ---- main -----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds: no new torch.compile after this much time (default 150)")
    parser.add_argument("--quick", action="store_true", help="each op's first case only, fewer runs")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        fail("torch %s sees no CUDA device (torch.cuda.is_available() is False); nothing to measure"
             % torch.__version__)
    began = time.monotonic()
    device = torch.device("cuda")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    dynamo = getattr(torch, "_dynamo", None)
    if dynamo is not None:
        # One compiled function serves several shapes; each shape is its own static graph.
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dynamo.config, name):
                setattr(dynamo.config, name, 64)
    triton_version = None
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        pass
    properties = torch.cuda.get_device_properties(device)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print("torch_peers — torch %s, triton %s, CUDA %s, %s, %s" % (torch.__version__, triton_version,
          torch.version.cuda, properties.name, date))
    runs = 5 if args.quick else args.runs
    timer = Timer(2 if args.quick else args.warmup, runs)
    results = []
    header = "  %-9s %-20s %-5s %-17s %-8s %10s %9s %8s %9s" % ("op", "variant", "dtype", "shape", "impl",
                                                                 "median ms", "GB/s", "of copy", "compile s")
    print(header)

    def record(op, variant, shape, impl, bytes_moved, ms, batch, compile_s, copy_gbps):
        gbps = bytes_moved / (ms * 1e-3) / 1e9
        entry = {"op": op, "variant": variant, "dtype": "bf16" if op != "copy" else "u8",
                 "shape": shape_dims(op, shape) if op != "copy" else [COPY_BYTES],
                 "shape_text": shape_text(op, shape) if op != "copy" else "%d MiB" % (COPY_BYTES >> 20),
                 "impl": impl, "bytes": bytes_moved, "ms": round(ms, 6), "gbps": round(gbps, 2),
                 "copy_gbps": round(copy_gbps or gbps, 2), "runs": runs, "batch": batch,
                 "compile_s": round(compile_s, 2) if compile_s is not None else None}
        results.append(entry)
        fraction = "%5.1f%%" % (100.0 * gbps / copy_gbps) if copy_gbps else "-"
        print("  %-9s %-20s %-5s %-17s %-8s %10.4f %9.1f %8s %9s" % (
            op, variant, entry["dtype"], entry["shape_text"], impl, ms, gbps, fraction,
            "%.1f" % compile_s if compile_s is not None else "-"), flush=True)
        return gbps

    # Copy bandwidth: 1 GiB, one set (far larger than L2).
    src = torch.randint(0, 256, (COPY_BYTES,), device=device, dtype=torch.uint8)
    dst = torch.empty_like(src)
    ms, batch = timer.time(lambda a, b: b.copy_(a), [(src, dst)])
    copy_gbps = record("copy", "tensor.copy_", (COPY_BYTES, 1), "copy_", 2 * COPY_BYTES, ms, batch, None, None)
    del src, dst

    skipped, failed = [], []
    ops_done = set()
    for op, variant, shape in CASES:
        if args.quick and op in ops_done:
            continue
        ops_done.add(op)
        name = "%s %s %s" % (op, variant, shape_text(op, shape))
        sets = None
        try:
            fn, make_inputs, bytes_moved, set_bytes = make_case(op, variant, shape, dtype, device)
            set_count = min(MAX_SETS, max(2, math.ceil(ROTATION_BYTES / set_bytes)))
            sets = [make_inputs() for _ in range(set_count)]
            ms, batch = timer.time(fn, sets)
            record(op, variant, shape, "eager", bytes_moved, ms, batch, None, copy_gbps)
            if time.monotonic() - began > args.budget:
                skipped.append(name)
                print("  %-9s %-20s %-5s %-17s %-8s skipped: the %.0f s budget is spent" % (
                    op, variant, "bf16", shape_text(op, shape), "compile", args.budget), flush=True)
            else:
                compiled = torch.compile(fn, dynamic=False)
                compile_start = time.monotonic()
                compiled(*sets[0])
                torch.cuda.synchronize()
                compile_s = time.monotonic() - compile_start
                ms, batch = timer.time(compiled, sets)
                record(op, variant, shape, "compile", bytes_moved, ms, batch, compile_s, copy_gbps)
        except Exception as error:  # one case failing (compile error, out of memory) must not end the run
            failed.append("%s: %s: %s" % (name, type(error).__name__, str(error).splitlines()[0] if str(error) else ""))
            print("  %-9s %-20s %-5s %-17s FAILED: %s" % (op, variant, "bf16", shape_text(op, shape), failed[-1]),
                  flush=True)
        del sets
        torch.cuda.empty_cache()

    elapsed = time.monotonic() - began
    print("torch_peers: %d results in %.0f s%s%s" % (
        len(results), elapsed, "; compile skipped for %d cases (budget)" % len(skipped) if skipped else "",
        "; %d cases FAILED" % len(failed) if failed else ""))
    if args.json:
        document = {"date": date, "torch_version": torch.__version__, "triton_version": triton_version,
                    "cuda_version": torch.version.cuda, "device": properties.name,
                    "bytes": "minimum bytes: each input read once, each output written once; copy: read + written",
                    "method": "CUDA events around batches >= 2 ms queued behind a GPU sleep; median of %d" % runs,
                    "elapsed_s": round(elapsed, 1), "compile_skipped": skipped, "failed": failed,
                    "results": results}
        with open(args.json, "w") as out:
            json.dump(document, out, indent=1)
            out.write("\n")
        print("torch_peers: results written to %s" % args.json)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
