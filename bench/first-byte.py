#!/usr/bin/env python3
"""Run a command N times; print, per run, the seconds from spawn to the first
byte it writes to stdout matching MARKER, the total run time, the exit
status, the spawn's CLOCK_MONOTONIC time (to place other logs on it), and
the CLOCK_MONOTONIC time at which kiln had the job's payload (the line
KILN_TIMINGS makes it write on stderr; nan without one)."""
import os, re, subprocess, sys, tempfile, time

READY = re.compile(rb"payload ready at CLOCK_MONOTONIC ([0-9.]+) s")

def run(cmd, marker):
    env = dict(os.environ, KILN_TIMINGS="1")
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        first, buf = None, b""
        while True:
            chunk = p.stdout.read1(65536)
            if not chunk:
                break
            buf += chunk
            if first is None and marker in buf:
                first = time.monotonic() - t0
        p.wait()
        total = time.monotonic() - t0
        err.seek(0)
        m = READY.search(err.read(1 << 20))
    return first, total, p.returncode, t0, float(m.group(1)) if m else float("nan")

if __name__ == "__main__":
    n, marker, cmd = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3:]
    for _ in range(n):
        first, total, rc, t0, ready = run(cmd, marker)
        print(f"{first if first is not None else float('nan'):.3f} {total:.3f} {rc} {t0:.6f} {ready:.6f}", flush=True)
