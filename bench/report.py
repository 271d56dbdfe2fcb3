"""Write bench/RESULTS.md from bench/run.sh's data in bench/out/.

Usage (by run.sh): report.py OUT RUNS N C SINK_N CURVE_N RATE_SECS BENCHTIME HAVE_BENCH SECONDS

The file is regenerated whole; the sections other scripts own (between
<!-- name --> markers, written by bench/section.py) are carried over at the
end unchanged."""
import csv, collections, pathlib, re, statistics, sys

out = pathlib.Path(sys.argv[1])
runs, n, c, sink_n, curve_n, rate_secs, benchtime, have_bench, secs = sys.argv[2:11]
go_count = sys.argv[11] if len(sys.argv) > 11 else runs
have_bench = have_bench == "1"
path = pathlib.Path(__file__).parent / "RESULTS.md"
old = path.read_text() if path.exists() else ""
owners = {"wan": "bench/wan.sh", "campaign": "bench/campaign.sh", "queue": "bench/queue.sh", "limits": "bench/limits.sh"}
kept = []
for name, script in owners.items():
    m = re.search(rf"<!-- {name} -->\n.*?<!-- /{name} -->\n", old, re.S)
    if m:
        kept.append(m.group(0))

machine = dict(line.rstrip("\n").split("=", 1) for line in open(out / "machine.txt"))
L = []
w = L.append
w("# herald benchmark results\n")
w("Written by `bash bench/run.sh` (see its header for the settings); every figure in the sections")
w("below the machine comes from that one run, and every ratio compares tools measured in it.")
w("The sections at the end are carried over from the other bench scripts' own runs.\n")
w("## Machine\n")
w(f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['ram_gib']} GiB")
w(f"- kernel: {machine['kernel']}; Go: {machine['go']}")
w(f"- date: {machine['date']}; commit: {machine['commit']}")
w(f"- load average at the start: {machine['load']} (the machine may be shared: the spread shows it)")
w(f"- settings: RUNS={runs} N={n} C={c} SINK_N={sink_n} CURVE_N={curve_n} RATE_SECS={rate_secs} BENCHTIME={benchtime}; the run took {int(secs)//60} min {int(secs)%60} s\n")

rows = list(csv.DictReader(open(out / "main.csv")))
by = collections.OrderedDict()
for r in rows:
    by.setdefault(r["tool"], []).append(r)

def med(tool, key):
    v = [float(r[key]) for r in by.get(tool, []) if r[key] != ""]
    return statistics.median(v) if v else None

src = med("smtp-source", "msgs_per_s")
sink_src = med("smtp-source -c → smtp-sink", "msgs_per_s")
w(f"## Side by side (median of {runs} runs, min–max)\n")
w(f"Everything on 127.0.0.1, sharing the machine's cores. The closed-loop rows send {int(n):,} messages of ~2 KB")
w(f"over {c} connections to Postfix's smtp-sink: smtp-source reuses its connections (`-d -s {c} -l 2048`);")
w(f"herald bench is closed loop (`--connections {c} --size 2048`, pipelining when offered); the herald send and")
w(f"worker rows are the whole {int(n):,}-recipient campaign (CSV, queue, render, SMTP, settle; bench/lib.sh),")
w("the worker rows from `herald enqueue` until the queue reports the campaign complete, with the")
w(f"{c} connections split between the workers, Redis a local redis-server on a unix socket. The last two")
w(f"rows receive: `smtp-source -c -l 2000 -m {int(sink_n):,} -s {c}` (a new connection per message) into")
w("`smtp-sink -c -u root 127.0.0.1:PORT 1000` or `herald sink --listen 127.0.0.1:PORT`, each started fresh.")
w("Peak RSS is the sending tool's (the largest worker's), except in the sink rows where it is the sink's.")
w("Latency is herald bench's per message, from MAIL to the reply at the end of the data; smtp-source does")
w("not report one. Ratios: the sending rows to smtp-source, the sink rows to smtp-sink's row.\n")
w("| tool | msgs/s | min–max | ratio | p50 ms | p99 ms | peak RSS |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for tool, rs in by.items():
    v = [float(r["msgs_per_s"]) for r in rs]
    m = statistics.median(v)
    base = sink_src if "→" in tool else src
    ratio = f"{m / base:.2f}×" if base else ""
    p50, p99 = med(tool, "p50_ms"), med(tool, "p99_ms")
    rss = max(float(r["peak_rss_mb"]) for r in rs)
    w(f"| {tool} | {m:,.0f} | {min(v):,.0f}–{max(v):,.0f} | {ratio} | {'' if p50 is None else f'{p50:.2f}'} | {'' if p99 is None else f'{p99:.2f}'} | {rss:.0f} MB |")
if not have_bench:
    w("\nherald bench not built: its rows, curves and goal are missing from this run.")
w("")

w("## Goals (ratios of this run)\n")
def goal(name, got, want, stretch=None):
    if got is None:
        w(f"- {name}: not measured")
        return
    verdict = "PASS" if got >= want else f"short of {want:.1f}×"
    extra = ""
    if stretch is not None:
        extra = f"; wanted {stretch:.1f}×: " + ("reached" if got >= stretch else "not yet")
    w(f"- {name}: {got:.3f}× (goal ≥ {want:.1f}×) **{verdict}**{extra}")
hb = med("herald bench", "msgs_per_s")
hs = med("smtp-source -c → herald sink", "msgs_per_s")
camp = med("herald send (embedded)", "msgs_per_s")
goal(f"herald bench ÷ smtp-source at {c} connections", hb / src if hb and src else None, 1.0)
goal("herald sink ÷ smtp-sink (receiving)", hs / sink_src if hs and sink_src else None, 1.0)
goal("full campaign (herald send, embedded queue) ÷ smtp-source", camp / src if camp and src else None, 0.6, 1.0)
w("")

w("## Curves\n")
w(f"Throughput against connections: {int(curve_n):,} messages per point, one run per point, to smtp-sink.")
w(f"Latency against the offered rate: herald bench open loop (`--rate R --duration {rate_secs}s`), rising until the")
w("server takes less than 90% of the offer (saturation); p50 and p99 per message.\n")
w("![msgs/s against connections](connections.png)\n")
lat = list(csv.DictReader(open(out / "curve-latency.csv")))
if lat:
    w("![latency against offered rate](latency.png)\n")
    w("| offered msgs/s | achieved msgs/s | p50 ms | p99 ms | errors |")
    w("| --- | --- | --- | --- | --- |")
    for r in lat:
        w(f"| {float(r['offered_rate']):,.0f} | {float(r['msgs_per_s']):,.0f} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")
    w("")
conn_rows = list(csv.DictReader(open(out / "curve-connections.csv")))
tools = list(dict.fromkeys(r["tool"] for r in conn_rows))
conns = list(dict.fromkeys(r["connections"] for r in conn_rows))
cell = {(r["tool"], r["connections"]): float(r["msgs_per_s"]) for r in conn_rows}
w("| connections | " + " | ".join(tools) + " |")
w("| --- | " + " | ".join("---" for _ in tools) + " |")
for k in conns:
    w(f"| {k} | " + " | ".join(f"{cell[(t, k)]:,.0f}" if (t, k) in cell else "" for t in tools) + " |")
w("")

w(f"## Go benchmarks (-count={go_count}, -benchtime={benchtime})\n")
w("`go test -run '^$' -bench . ./bench/ ./queue/boltq/ ./queue/redisq/ ./ratelimit/`: rendering (bench: Render),")
w("enqueue and lease + settle on the embedded queue (bench, queue/boltq) and on Redis (queue/redisq, a real")
w("redis-server), classification of a reply (bench: Classify), and the limiters (ratelimit). Raw output, ready")
w("for benchstat: bench/out/gobench.txt.\n")
bs = out / "benchstat.txt"
if bs.exists() and bs.stat().st_size:
    w("```")
    w(bs.read_text().rstrip())
    w("```\n")
else:
    w("(benchstat was not available; the medians below are from the raw output)\n")
    vals = collections.OrderedDict()
    pkg = ""
    for line in open(out / "gobench.txt"):
        if line.startswith("pkg:"):
            pkg = line.split()[1].replace("github.com/heraldmail/herald/", "")
        mm = re.match(r"(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op", line)
        if mm:
            vals.setdefault((pkg, mm.group(1)), []).append(float(mm.group(3)))
    w("| package | benchmark | ns/op (median) |")
    w("| --- | --- | --- |")
    for (p, b), v in vals.items():
        w(f"| {p} | {b} | {statistics.median(v):,.0f} |")
    w("")

if kept:
    w("## From the other bench scripts\n")
    w("Measured by their own scripts, in their own runs (not repeated by bench/run.sh); each says which.\n")
    for block in kept:
        w(block)
path.write_text("\n".join(L).rstrip() + "\n")
