#!/usr/bin/env python3
"""Summarizes a tools/kernel_trace.c trace: for each run of consecutive launches of one kernel (>= 100
launches, as kfbench_mm's warm-up and timed batches make), over its last 160 launches (kfbench_mm's
timed part): the median duration, the median gap to the next launch inside a batch (negative: the next
kernel started before this one ended, as with programmatic dependent launch), the median period
(start to next start), and the mean SM clock and power of the NVML samples taken while one of those
launches ran. NVML's power reading is averaged over a window longer than these kernels (250-650 W
were read while the board sat at its 700 W cap), so compare clocks, not powers. Traces that carry them
also give the clock-event reasons seen (NVML mask: 0x4 software power cap, 0x8 hardware slowdown, 0x80
hardware power brake; count of samples each) and, from the board's energy counter over the whole run of
launches (warm-up included, so the gaps between timed batches count), the mean power and mJ a launch.
The counter moves in steps about 100 ms apart: only runs several steps long give a usable figure.

    python3 tools/kernel_trace.py TRACE"""
import bisect
import statistics
import sys

BATCH_GAP_NS = 50000  # a longer gap is kfbench_mm's host sync between timed batches


def main(path):
    kernels, samples = [], []
    with open(path) as f:
        for line in f:
            if line.startswith('#C'):
                fields = line.split()
                reasons = int(fields[4], 16) if len(fields) > 4 else None
                mj = int(fields[5]) if len(fields) > 5 else None
                samples.append((int(fields[1]), int(fields[2]), int(fields[3]), reasons, mj))
                continue
            parts = line.split(None, 4)
            if len(parts) == 5:
                kernels.append((int(parts[0]), int(parts[1]), parts[4].strip()))
    kernels.sort()
    samples.sort()
    times = [s[0] for s in samples]
    runs = []
    for k in kernels:
        if runs and runs[-1][0] == k[2]:
            runs[-1][1].append(k)
        else:
            runs.append((k[2], [k]))
    for name, launches in runs:
        if len(launches) < 100:
            continue
        timed = launches[-160:]
        durations = [b - a for a, b, _ in timed]
        gaps, periods = [], []
        for (a0, b0, _), (a1, _, _) in zip(timed, timed[1:]):
            if a1 - b0 < BATCH_GAP_NS:
                gaps.append(a1 - b0)
                periods.append(a1 - a0)
        lo, hi = bisect.bisect_left(times, timed[0][0]), bisect.bisect_right(times, timed[-1][1])
        inside = [s for s in samples[lo:hi] if any(a <= s[0] <= b for a, b, _ in timed)]
        mhz = statistics.mean(s[1] for s in inside) if inside else 0.0
        watts = statistics.mean(s[2] for s in inside) / 1e3 if inside else 0.0
        extra = ""
        why = {}
        for smp in inside:
            if smp[3] is not None:
                why[smp[3]] = why.get(smp[3], 0) + 1
        if why:
            extra += "  reasons " + ",".join(f"{k:#x}:{v}" for k, v in sorted(why.items()))
        # energy over the whole run, between the first and last updates of the counter inside [first start,
        # last end] (NVML updates it every ~100 ms, so a run needs a few hundred ms for a usable figure)
        lo, hi = bisect.bisect_left(times, launches[0][0]), bisect.bisect_right(times, launches[-1][1])
        window = [smp for j, smp in enumerate(samples[lo:hi], lo)
                  if smp[4] is not None and j > 0 and samples[j - 1][4] is not None and samples[j - 1][4] != smp[4]]
        if len(window) >= 2 and window[-1][4] > window[0][4]:
            t0, t1 = window[0][0], window[-1][0]
            count = sum(1 for a, _, _ in launches if t0 <= a < t1)
            joules = (window[-1][4] - window[0][4]) / 1e3
            extra += f"  energy {joules / ((t1 - t0) / 1e9):4.0f} W, {joules * 1e3 / max(count, 1):7.2f} mJ a launch"
        print(f"{name[:40]:40s} launches {len(launches):5d}  duration {statistics.median(durations) / 1e3:8.2f} us"
              f"  gap {statistics.median(gaps) / 1e3:6.2f} us  period {statistics.median(periods) / 1e3:8.2f} us"
              f"  SM clock {mhz:5.0f} MHz  power {watts:4.0f} W ({len(inside)} samples){extra}")


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
