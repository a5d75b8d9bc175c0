#!/usr/bin/env python3
"""Samples the requests in flight on the block device holding FILE (/sys/dev/block/M:m/inflight)
about once a millisecond and prints how the time splits over queue depths, and how long the
device sat idle each time. Run it beside a streaming benchmark to see whether the disk is kept
busy (sluice bench prints the busy fraction; this shows the shape).

  bench/inflight.py FILE SECONDS [DELAY_SECONDS]
"""
import collections
import os
import sys
import time


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    st = os.stat(sys.argv[1])
    path = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/inflight"
    seconds = float(sys.argv[2])
    time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
    depth = collections.Counter()
    idle_runs = collections.Counter()
    run = 0
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open(path) as f:
            reads = int(f.read().split()[0])
        n += 1
        depth[min(reads // 8 * 8, 64)] += 1
        if reads == 0:
            run += 1
        elif run:
            idle_runs[run] += 1
            run = 0
        time.sleep(0.001)
    print(f"{n} samples of {path}")
    for k in sorted(depth):
        label = f"{k}+" if k == 64 else f"{k}-{k + 7}"
        print(f"  reads in flight {label:>6}: {100 * depth[k] / n:5.1f}% of samples")
    print("  idle stretches (samples: count):", dict(sorted(idle_runs.items())))


if __name__ == "__main__":
    main()
