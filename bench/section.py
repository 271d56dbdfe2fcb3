"""Replace one section of bench/RESULTS.md (between <!-- NAME --> markers)
with standard input; add the section at the end if it is not there yet."""
import sys, pathlib, platform, os, subprocess

name = sys.argv[1]
path = pathlib.Path(__file__).parent / "RESULTS.md"
body = sys.stdin.read().rstrip() + "\n"
start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
if path.exists():
    text = path.read_text()
else:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = (f"# herald benchmark results\n\nMachine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"{platform.system()} {platform.release()}. Every figure below comes from one run of the "
            f"script named in its section; ratios compare tools measured in that same run.\n\n")
block = f"{start}\n{body}{end}\n"
if start in text and end in text:
    a, b = text.index(start), text.index(end) + len(end) + 1
    text = text[:a] + block + text[b:]
else:
    text += "\n" + block
path.write_text(text)
