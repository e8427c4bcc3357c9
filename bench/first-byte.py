#!/usr/bin/env python3
"""Run a command N times; print, per run, the seconds from spawn to the first
byte it writes to stdout matching MARKER, the total run time, the exit
status, and the spawn's CLOCK_MONOTONIC time (to place other logs on it)."""
import subprocess, sys, time

def run(cmd, marker):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first, buf = None, b""
    while True:
        chunk = p.stdout.read1(65536)
        if not chunk:
            break
        buf += chunk
        if first is None and marker in buf:
            first = time.monotonic() - t0
    p.wait()
    return first, time.monotonic() - t0, p.returncode, t0

if __name__ == "__main__":
    n, marker, cmd = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3:]
    for _ in range(n):
        first, total, rc, t0 = run(cmd, marker)
        print(f"{first if first is not None else float('nan'):.3f} {total:.3f} {rc} {t0:.6f}", flush=True)
