#!/usr/bin/env python3
"""combine.py — joins kfbench's JSON (kfuse on each backend) and torch_peers.py's JSON (torch on the same
GPU, same run) into one Markdown table, ready for docs/BENCHMARKS.md:

  per op / variant / dtype / shape: kfuse GB/s on cuda, vulkan and opencl (each with its fraction of the
  best copy of the hardware), torch.compile and torch eager GB/s, the hardware's best copy bandwidth,
  and the ratio of kfuse on CUDA to torch.compile (the copy of each API and torch's copy_ are listed
  above the table).

Both files count bytes the same way (the minimum: each input read once, each output written once), so
GB/s compare directly. Only GPU devices of kfbench are used (not the CPU backend or software drivers);
with several GPUs, the hardware of the first CUDA device (else the first GPU).

Usage:  python3 bench/combine.py BENCH.json [TORCH.json] [--markdown=FILE]
A missing or unreadable TORCH.json leaves the torch columns empty (with a note), not an error.
"""
import argparse
import json
import sys

BACKENDS = ("cuda", "vulkan", "opencl")
HOST_DEVICE_TYPES = ("cpu", "software")


def load(path, required):
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as error:
        if required:
            print("combine: cannot read %s: %s" % (path, error), file=sys.stderr)
            sys.exit(2)
        return None, "%s: %s" % (path, error)


def key_of(entry):
    return (entry["op"], entry["variant"], entry["dtype"], entry["shape_text"])


def gpu_results(bench):
    """The kfbench results of one GPU: the hardware of the first CUDA device, else of the first GPU."""
    gpus = [r for r in bench.get("results", []) if r.get("device_type") not in HOST_DEVICE_TYPES]
    if not gpus:
        return [], None
    cuda = [r for r in gpus if r["backend"] == "cuda"]
    hw_index = (cuda or gpus)[0].get("hw_index", (cuda or gpus)[0]["device_index"])
    chosen = [r for r in gpus if r.get("hw_index", r["device_index"]) == hw_index]
    return chosen, chosen[0]["device"]


def fmt_gbps(gbps):
    return "%.0f" % gbps


def build_table(bench, torch_doc, torch_note):
    chosen, device = gpu_results(bench)
    # One device per backend (the first listed, if a backend lists the same GPU twice).
    device_of_backend = {}
    for r in chosen:
        device_of_backend.setdefault(r["backend"], r["device_index"])
    kfuse = {}
    copies = {}
    order = []
    for r in chosen:
        if device_of_backend.get(r["backend"]) != r["device_index"]:
            continue
        if r["op"] == "copy":
            copies[r["backend"]] = r
            continue
        key = key_of(r)
        if key not in order:
            order.append(key)
        kfuse[(r["backend"],) + key] = r
    hw_copy = max([c["gbps"] for c in copies.values()] or [0.0])
    hw_copy_backend = max(copies, key=lambda b: copies[b]["gbps"]) if copies else None

    torch_results = {}
    torch_copy = None
    if torch_doc:
        for t in torch_doc.get("results", []):
            if t["op"] == "copy":
                torch_copy = t
                continue
            torch_results[(t["impl"],) + key_of(t)] = t
            if key_of(t) not in order:
                order.append(key_of(t))

    lines = []
    date = bench.get("date", "?")
    lines.append("Device: %s. kfbench %s (kfuse %s)%s." % (
        device or "no GPU in kfbench's results", date, bench.get("kfuse_version", "?"),
        "; torch %s, triton %s, %s" % (torch_doc.get("torch_version"), torch_doc.get("triton_version"),
                                        torch_doc.get("date")) if torch_doc else ""))
    copy_parts = ["%s %s GB/s" % (b, fmt_gbps(copies[b]["gbps"])) for b in BACKENDS if b in copies]
    if torch_copy:
        copy_parts.append("torch copy_ %s GB/s" % fmt_gbps(torch_copy["gbps"]))
    lines.append("Copy (bytes read + written): %s. **hw copy** = the best kfuse copy of this GPU in the run "
                 "(%s GB/s, %s); each kfuse figure shows its fraction of it." % (
                     ", ".join(copy_parts) or "not measured", fmt_gbps(hw_copy), hw_copy_backend or "-"))
    lines.append("Bytes: the minimum each op must move (each input read once, each output written once), "
                 "the same count for kfuse and torch.")
    if torch_note:
        lines.append("torch: not available (%s)." % torch_note)
    lines.append("")
    lines.append("| op | variant | dtype | shape | kfuse cuda GB/s | kfuse vulkan GB/s | kfuse opencl GB/s "
                 "| torch.compile GB/s | torch eager GB/s | hw copy GB/s | cuda / torch.compile |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in order:
        op, variant, dtype, shape = key
        cells = []
        for backend in BACKENDS:
            r = kfuse.get((backend,) + key)
            if r is None:
                cells.append("–")
            elif hw_copy > 0:
                cells.append("%s (%.1f%%)" % (fmt_gbps(r["gbps"]), 100.0 * r["gbps"] / hw_copy))
            else:
                cells.append(fmt_gbps(r["gbps"]))
        compiled = torch_results.get(("compile",) + key)
        eager = torch_results.get(("eager",) + key)
        cells.append(fmt_gbps(compiled["gbps"]) if compiled else "–")
        cells.append(fmt_gbps(eager["gbps"]) if eager else "–")
        cells.append(fmt_gbps(hw_copy) if hw_copy > 0 else "–")
        cuda = kfuse.get(("cuda",) + key)
        if cuda and compiled and compiled["gbps"] > 0:
            ratio = cuda["gbps"] / compiled["gbps"]
            cells.append(("**%.2f×**" if ratio >= 1.0 else "%.2f×") % ratio)
        else:
            cells.append("–")
        shape_cell = shape.replace("x", "×")
        lines.append("| %s | %s | %s | %s | %s |" % (op, variant, dtype, shape_cell, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json")
    parser.add_argument("torch_json", nargs="?")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    bench, _ = load(args.bench_json, required=True)
    torch_doc, torch_note = (None, "no torch JSON given")
    if args.torch_json:
        torch_doc, torch_note = load(args.torch_json, required=False)
    table = build_table(bench, torch_doc, torch_note)
    sys.stdout.write(table)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(table)
        print("\ncombine: table written to %s" % args.markdown)


if __name__ == "__main__":
    main()
