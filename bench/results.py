#!/usr/bin/env python3
"""Writes the generated top of bench/RESULTS.md from a run's measurements
in bench/out/ (bench/run calls it); everything from the file's first
`## ` heading on is hand-written analysis and is kept.

usage: bench/results.py OUT RESULTS MACHINE INGEST_RSS PROC_RSS SMOKE BACKLOG REPEATS FRESH_RATE SECS
"""
import json
import statistics
import sys

out, results, machine, ingest_rss, proc_rss, smoke, backlog, repeats, fresh_rate, secs = sys.argv[1:]
fresh_rate, secs = int(fresh_rate), int(secs)
repeats = int(repeats)
smoke = smoke == "1"


def load(name):
    with open(f"{out}/{name}.json") as f:
        return json.load(f)


def series(prefix, key):
    """The repeats' values of `key`, in run order."""
    return [load(f"{prefix}-{i}")[key] for i in range(1, repeats + 1)]


def spread(values, unit=""):
    """`median (min–max)`."""
    return f"{statistics.median(values):,.0f}{unit} ({min(values):,.0f}–{max(values):,.0f})"


def ratio(figures, limits):
    """The ratio of the medians, and the range of the pairs' ratios."""
    pairs = [f / l for f, l in zip(figures, limits) if l]
    if not pairs or not statistics.median(limits):
        return "n/a"
    return (f"**{statistics.median(figures) / statistics.median(limits):.2f}** "
            f"(pairs {min(pairs):.2f}–{max(pairs):.2f})")


def verdict(ok):
    return "met" if ok else "**missed**"


def median_run(prefix, key):
    """The repeat whose figure is the median (the lower middle one)."""
    values = series(prefix, key)
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(order) - 1) // 2] + 1


b1_bare = series("b1-bare", "accepted_reports_per_second")
b1 = series("b1-ingest", "accepted_reports_per_second")
b2_pp = series("b2-kafka", "records_per_second")
b2 = series("b2-ingest", "accepted_reports_per_second")
b3 = series("b3-processor", "rows_per_second")
b3_client = series("b3-client", "rows_per_second")
half, fresh, instr = load("b1-half"), load("b4"), load("instr")
record = load("b2-kafka-1")["record_bytes"]
med = statistics.median
load_start = open(f"{out}/load-start.txt").read().split()
load_end = open(f"{out}/load-end.txt").read().split()

lines = [
    "# Benchmark results" + (" (smoke run: figures meaningless)" if smoke else ""),
    "",
    f"Machine: {machine}. Kafka, ClickHouse 18.16, the load generator and the services all on it,",
    f"shared with other work: load average {' '.join(load_start)} at the start, {' '.join(load_end)} at the end.",
    "Command: `bench/run`" + (" --smoke" if smoke else "") + ". Raw measurements: `bench/out/`.",
    f"B1–B3: {repeats} runs of each figure and of its limit, interleaved; median (min–max), ratio of the",
    "medians (and the range of the runs' pairwise ratios). B4 and B5: one measurement each.",
    "",
    "| | figure | limit it is compared to | ratio | target | |",
    "| --- | --- | --- | --- | --- | --- |",
    f"| B1 single-report ingest | {spread(b1)} reports/s (202, acks=all) | bare axum server: {spread(b1_bare)} req/s "
    f"| {ratio(b1, b1_bare)} | ≥ 0.6 and ≥ 25,000/s | {verdict(med(b1) >= 25000 and med(b1) >= 0.6 * med(b1_bare))} |",
    f"| B1 latency at {half['requests_per_second']:,.0f}/s (half of saturation) | p50 {half['latency_ms_p50']:.1f} ms, "
    f"p99 {half['latency_ms_p99']:.1f} ms | | | | |",
    f"| B2 batch ingest (100/request, gzip) | {spread(b2)} reports/s | Kafka ProducerPerformance, {record}-byte records "
    f"(acks=all, lz4): {spread(b2_pp)} records/s | {ratio(b2, b2_pp)} | ≥ 0.85 | {verdict(med(b2) >= 0.85 * med(b2_pp))} |",
    f"| B3 processor, backlog of {int(backlog):,} crashes | {spread(b3)} rows/s | clickhouse-client, same rows, same views: "
    f"{spread(b3_client)} rows/s | {ratio(b3, b3_client)} | ≥ 0.8 | {verdict(med(b3) >= 0.8 * med(b3_client))} |",
    # At the offered rate means every report offered was accepted and the
    # answers kept up (their p99, counted from when each was due, within the
    # same second). The run's mean rate would count the last answers' wait
    # as time not offering.
    f"| B4 freshness, {fresh_rate:,}/s offered for {secs} s | p50 {fresh['freshness_ms_p50']:.0f} ms, "
    f"p99 {fresh['freshness_ms_p99']:.0f} ms ({fresh['freshness_samples']} samples); "
    f"{fresh['accepted_reports']:,} of {fresh_rate * secs:,} accepted, answers p99 {fresh['latency_ms_p99']:.0f} ms "
    f"| | | p99 ≤ 1 s at 5,000/s "
    f"| {verdict(fresh['freshness_samples'] > 0 and fresh['freshness_ms_p99'] <= 1000 and fresh['accepted_reports'] == fresh_rate * secs and fresh['latency_ms_p99'] <= 1000)} |",
    f"| B5 peak RSS | ingest {ingest_rss} MB (B1, B2, B4), processor {proc_rss} MB (B3, B4) | | | ≤ 80 MB, ≤ 300 MB "
    f"| {verdict(float(ingest_rss) <= 80 and float(proc_rss) <= 300)} |",
    f"| Instructions, ingest | **{instr['ingest_instructions_per_report']:,.0f} per report** (callgrind, "
    f"{instr['reports']:,} reports of the load mix) | | | ≤ half of the first count | |",
    f"| Instructions, processor | **{instr['processor_instructions_per_message']:,.0f} per message** "
    f"(the same reports, {instr['mean_message_bytes']:,} bytes each on average) | | | | |",
    "",
    "Cores each process used during the median run of each measurement (`/proc/<pid>/stat`;",
    "*client*: the script's child, i.e. the load generator, ProducerPerformance, clickhouse-client,",
    "or the row-count polls during B3's processor; *others*: the rest of the machine's busy time):",
    "",
    "| run | seconds | server | client | Kafka | ClickHouse | others | machine busy | server CPU per report |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]
runs = [
    ("B1 bare server", "b1-bare", "accepted_reports_per_second", "reports"),
    ("B1 ingest", "b1-ingest", "accepted_reports_per_second", "reports"),
    ("B2 ProducerPerformance", "b2-kafka", "records_per_second", None),
    ("B2 batch ingest", "b2-ingest", "accepted_reports_per_second", "reports"),
    ("B3 processor", "b3-processor", "rows_per_second", "rows"),
    ("B3 clickhouse-client", "b3-client", "rows_per_second", None),
]
for title, prefix, key, count in runs:
    i = median_run(prefix, key)
    cpu = load(f"{prefix}-{i}.cpu")
    cores = cpu["cores"]
    cell = lambda label: f"{cores[label]:.2f}" if label in cores else ""
    per_report = ""
    if count and "server" in cores:
        if count == "reports":
            n = load(f"{prefix}-{i}")["accepted_reports"]
        else:
            n = load(f"{prefix}-{i}")["rows_per_second"] * cpu["wall_seconds"]
        if n:
            per_report = f"{cores['server'] * cpu['wall_seconds'] / n * 1e6:.1f} µs"
    lines.append(
        f"| {title} (run {i}) | {cpu['wall_seconds']:.1f} | {cell('server')} | {cell('client')} | {cell('kafka')} "
        f"| {cell('clickhouse')} | {cell('others')} | {cpu['machine_busy_cores']:.2f} of {cpu['machine_cores']:.0f} "
        f"| {per_report} |")
lines.append("")
print("\n".join(lines))

try:
    previous = open(results).read()
except FileNotFoundError:
    previous = ""
kept = previous.find("\n## ")
if kept >= 0:
    lines.append(previous[kept + 1:].rstrip("\n"))
with open(results, "w") as f:
    f.write("\n".join(lines) + "\n")
