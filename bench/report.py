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
w(f"{c} connections shared by the workers (a provider's `connections` holds for all processes together), Redis a local redis-server on a unix socket. The last two")
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
goal("full campaign (herald send, embedded queue) ÷ herald bench", camp / hb if camp and hb else None, 0.8)
w("")

# CPU per message: the tool's, and redis-server's over the same rows.
cpu_rows = list(csv.DictReader(open(out / "cpu.csv"))) if (out / "cpu.csv").exists() else []
cpu_by = collections.OrderedDict()
for r in cpu_rows:
    cpu_by.setdefault(r["tool"], []).append(r)
def per_k(rs, key):
    return statistics.median(1e6 * float(r[key]) / float(r["messages"]) for r in rs)
limits = []  # (name, got, op, want, unit)
fig = {}  # figures for bench/SCALING.md (see bench/scaling.tmpl.md)
if cpu_by:
    w(f"## CPU per 1,000 messages (median of {runs} runs)\n")
    w("User + system time of the herald processes (`/usr/bin/time -v`; the worker rows add `herald enqueue` and")
    w("every worker), and redis-server's over the same row (/proc/PID/stat). The Redis rows' sum is what one")
    w("message costs the machine; bench/SCALING.md reads them.\n")
    w("| tool | herald ms | redis-server ms | sum |")
    w("| --- | --- | --- | --- |")
    for tool, rs in cpu_by.items():
        h, r = per_k(rs, "cpu_s"), per_k(rs, "redis_cpu_s")
        w(f"| {tool} | {h:.1f} | {r:.1f} | {h + r:.1f} |")
    w("")
    for key, tool in (("SEND", "herald send (redis)"), ("W1", "herald enqueue + 1 worker (redis)"), ("W2", "herald enqueue + 2 workers (redis)")):
        if tool in cpu_by:
            fig[key + "_H"], fig[key + "_R"] = per_k(cpu_by[tool], "cpu_s"), per_k(cpu_by[tool], "redis_cpu_s")
    if "herald send (embedded)" in cpu_by:
        limits.append(("herald send (embedded) CPU per 1,000 messages", per_k(cpu_by["herald send (embedded)"], "cpu_s"), "<=", 35, "ms"))

scale = list(csv.DictReader(open(out / "scale.csv"))) if (out / "scale.csv").exists() else []
if scale:
    w("## Scale: the campaign from 10k to 1M recipients (embedded queue)\n")
    w(f"One `herald send` of each size (the bench campaign, {c} connections into smtp-sink). CPU per 1,000 messages")
    w("includes the process's start and the planning; the store is the bbolt file and its outcome journal")
    w("once the campaign is done.\n")
    w("| recipients | seconds | msgs/s | peak RSS | CPU ms per 1,000 | store | store per recipient |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for r in scale:
        k = int(r["recipients"])
        w(f"| {k:,} | {float(r['seconds']):.1f} | {float(r['msgs_per_s']):,.0f} | {r['peak_rss_mb']} MB | "
          f"{1e6 * float(r['cpu_s']) / k:.1f} | {int(r['store_bytes']) / 2**20:.1f} MiB | {int(r['store_bytes']) / k:.0f} B |")
    w("")
    big = max(scale, key=lambda r: int(r["recipients"]))
    bk = int(big["recipients"])
    limits.append((f"peak RSS at {bk:,} recipients", float(big["peak_rss_mb"]), "<", 100, "MB"))
    limits.append((f"store at {bk:,} recipients", int(big["store_bytes"]) / 1e6, "<", 100, "MB"))
    mid = [r for r in scale if int(r["recipients"]) == int(n)]
    if mid and bk != int(n):
        a = float(mid[0]["cpu_s"]) / int(n)
        b = float(big["cpu_s"]) / bk
        limits.append((f"CPU per message at {bk:,} ÷ at {int(n):,} (flat)", b / a, "<=", 1.1, "×"))

enq = list(csv.DictReader(open(out / "enqueue.csv"))) if (out / "enqueue.csv").exists() else []
if enq:
    w("## Redis: herald enqueue\n")
    w("The whole `herald enqueue` (start, reading and planning the file, writing) into the local redis-server;")
    w("bytes per recipient are `used_memory` after less before, divided by the recipients.\n")
    w("| recipients | seconds | jobs/s | bytes per recipient | redis-server CPU ms per 1,000 |")
    w("| --- | --- | --- | --- | --- |")
    for r in enq:
        k = int(r["recipients"])
        w(f"| {k:,} | {float(r['seconds']):.2f} | {float(r['jobs_per_s']):,.0f} | {float(r['bytes_per_recipient']):.0f} | {1e6 * float(r['redis_cpu_s']) / k:.1f} |")
    w("")
    big = max(enq, key=lambda r: int(r["recipients"]))
    fig["ENQ_R"] = 1e6 * float(big["redis_cpu_s"]) / int(big["recipients"])
    fig["ENQ_B"] = float(big["bytes_per_recipient"])
    fig["ENQ_B100"] = min(float(r["bytes_per_recipient"]) for r in enq if int(r["recipients"]) == min(int(x["recipients"]) for x in enq))
    limits.append((f"herald enqueue at {int(big['recipients']):,} recipients", float(big["jobs_per_s"]), ">=", 200000, "jobs/s"))
    limits.append(("Redis memory per recipient", max(float(r["bytes_per_recipient"]) for r in enq), "<=", 150, "B"))

fo = out / "failover.txt"
if fo.exists():
    w("## Failover mid-campaign (Redis Cluster, Sentinel)\n")
    w("`go test -count=1 -v -run 'TestWorkersSurvive(Cluster|Sentinel)Failover' ./cmd/herald/`: two workers on a")
    w("3-master/3-replica cluster, or on a Sentinel-watched master with a replica; the master holding the campaign")
    w("is killed mid-campaign (see the test for the sizes).\n")
    w("| setup | replica promoted after | longest stop in deliveries | delivered | duplicates | test |")
    w("| --- | --- | --- | --- | --- | --- |")
    # go test -v heads each test's output with "=== RUN|CONT|NAME Test…".
    logs, cur = collections.defaultdict(str), ""
    for line in fo.read_text().splitlines():
        mm = re.match(r"=== (?:RUN|CONT|NAME)\s+(\S+)", line)
        if mm:
            cur = mm.group(1)
        else:
            logs[cur] += line + "\n"
    text = fo.read_text()
    for kind in ("Cluster", "Sentinel"):
        name = f"TestWorkersSurvive{kind}Failover"
        m = re.search(r"served as master (\S+) after the kill; deliveries stopped for (\S+) at most.*?all (\d+) delivered .*?, (\d+) duplicates", logs[name])
        ok = re.search(rf"--- (PASS|FAIL|SKIP): {name}", text)
        verdict = ok.group(1) if ok else "did not run"
        if m:
            w(f"| {kind} | {m.group(1)} | {m.group(2)} | {int(m.group(3)):,} | {m.group(4)} | {verdict} |")
            fig[f"FO_{kind[0]}_PROMO"], fig[f"FO_{kind[0]}_STALL"] = m.group(1), m.group(2)
            fig["FO_DUPS"] = fig.get("FO_DUPS", 0) + int(m.group(4))
        else:
            w(f"| {kind} | | | | | {verdict} |")
    w("")

if limits:
    w("## Goals: scale (issue 18)\n")
    for name, got, op, want, unit in limits:
        okay = {"<": got < want, "<=": got <= want, ">=": got >= want}[op]
        shown = f"{got:,.0f}" if abs(got) >= 100 else f"{got:.2f}"
        w(f"- {name}: {shown} {unit} (goal {op.replace('<=', '≤').replace('>=', '≥')} {want:,} {unit}) **{'PASS' if okay else 'short'}**")
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

# bench/SCALING.md: the template with this run's figures.
if "W1_R" in fig and fig["W1_R"] > 0 and fig.get("W1_H"):
    fig["CAP_FAST"] = 1e6 / fig["W1_R"]
    fig["WORKER_RATE"] = 1e6 / fig["W1_H"]
    fig["RATIO"] = fig["CAP_FAST"] / fig["WORKER_RATE"]
tmpl = (pathlib.Path(__file__).parent / "scaling.tmpl.md").read_text()
tmpl = re.sub(r"\A<!--.*?-->\n", "", tmpl, flags=re.S)
def shown(v):
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
scaling = re.sub(r"@([A-Z0-9_]+)@", lambda m: shown(fig[m.group(1)]) if m.group(1) in fig else "(not measured)", tmpl)
scaling = scaling.replace("(`bash bench/run.sh`,", f"({machine['date']}, commit {machine['commit']}; `bash bench/run.sh`,", 1)
(pathlib.Path(__file__).parent / "SCALING.md").write_text(scaling)
