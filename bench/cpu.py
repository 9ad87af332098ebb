#!/usr/bin/env python3
"""CPU time of the processes a benchmark run involves, and of the whole
machine, so that bench/run can say who used the cores during a measurement
(the machine is shared: what none of the listed processes used is the
neighbours').

usage: bench/cpu.py snap FILE LABEL=PID...
         writes each process's CPU seconds (utime + stime from
         /proc/PID/stat), the machine's busy and total CPU seconds
         (/proc/stat) and the wall clock to FILE as JSON
       bench/cpu.py diff BEFORE AFTER OUT [LABEL=SECONDS...]
         writes to OUT, as JSON, the wall seconds between the two snapshots
         and the cores each label used over them (busy CPU seconds / wall),
         "others" being the machine's busy cores not accounted for; extra
         LABEL=SECONDS (a child's CPU, measured by the shell) join the
         labels
"""
import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # After the command name: state is field 3, utime 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_seconds():
    with open("/proc/stat") as f:
        cpu = [int(v) for v in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]  # idle, iowait
    return (sum(cpu[:8]) - idle) / TICK, sum(cpu[:8]) / TICK


def snap(path, pairs):
    busy, total = machine_seconds()
    procs = {}
    for pair in pairs:
        label, pid = pair.split("=", 1)
        seconds = process_seconds(pid)
        if seconds is not None:
            procs[label] = seconds
    with open(path, "w") as f:
        json.dump({"wall": time.time(), "busy": busy, "total": total, "procs": procs}, f)


def diff(before_path, after_path, out_path, extra):
    before, after = (json.load(open(p)) for p in (before_path, after_path))
    wall = max(after["wall"] - before["wall"], 1e-3)
    cores = {}
    for label, seconds in after["procs"].items():
        if label in before["procs"]:
            cores[label] = (seconds - before["procs"][label]) / wall
    for pair in extra:
        label, seconds = pair.split("=", 1)
        cores[label] = float(seconds) / wall
    busy = (after["busy"] - before["busy"]) / wall
    cores["others"] = max(0.0, busy - sum(cores.values()))
    with open(out_path, "w") as f:
        json.dump({"wall_seconds": wall, "machine_busy_cores": busy,
                   "machine_cores": (after["total"] - before["total"]) / wall,
                   "cores": cores}, f, indent=2)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "snap":
        snap(args[0], args[1:])
    elif command == "diff":
        diff(args[0], args[1], args[2], args[3:])
    else:
        sys.exit(__doc__)
