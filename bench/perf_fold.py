#!/usr/bin/env python3
"""perf_fold.py — fold `perf script` call stacks, rank them, draw a flame graph.

Written here rather than fetched: Python 3 stdlib only, no flamegraph.pl.

    perf script -i perf.data | python3 bench/perf_fold.py --out docs/perf/NAME
    python3 bench/perf_fold.py --perf-data perf.data --out docs/perf/NAME

writes NAME.folded (one "comm;outer;...;inner count" line per distinct
stack, the format flamegraph tools read), NAME.svg (a flame graph: width =
share of samples, hover for the exact share) and NAME.txt (ranked summary:
samples per process, top self-time functions per process, top inclusive
functions of our own code).  Samples are weighted by their period, so
cpu-clock and cycles recordings both fold right.

--per-command N divides by the number of commands the recording covered and
reports microseconds of CPU per command next to the shares.
"""

import argparse
import collections
import html
import re
import subprocess
import sys

HEADER = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s+(?:\[\d+\]\s+)?[\d.]+:\s+(\d+)\s+(\S+):?")
FRAME = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")


def clean_symbol(sym, dso):
    """Function name without offset; unknown frames named after their object."""
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    if sym in ("[unknown]", "") or sym.startswith("0x"):
        base = dso.rsplit("/", 1)[-1] if dso else "?"
        return f"[{base}]"
    return sym.replace(";", ":")


def read_samples(lines):
    """Yields (comm, [frames outer->inner], weight)."""
    comm, weight, frames = None, 0, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, list(reversed(frames)), weight
            comm, frames = None, []
            continue
        if comm is None and not line[0].isspace():
            m = HEADER.match(line)
            if m:
                comm, weight, frames = m.group(1).strip(), int(m.group(4)), []
            continue
        m = FRAME.match(line)
        if m and comm is not None:
            frames.append(clean_symbol(m.group(2), m.group(3)))
    if comm is not None:
        yield comm, list(reversed(frames)), weight


def process_name(comm):
    # lws service thread and the worker threads are named after the binary.
    return comm


# ---- SVG ---------------------------------------------------------------------

def build_tree(folded):
    root = {"n": "all", "v": 0, "c": {}}
    for stack, v in folded.items():
        root["v"] += v
        node = root
        for f in stack.split(";"):
            node = node["c"].setdefault(f, {"n": f, "v": 0, "c": {}})
            node["v"] += v
    return root


def color(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    if name.startswith("["):  # unknown frames: grey-blue
        return f"rgb({150 + h % 40},{160 + h % 40},{190 + h % 40})"
    if "kernel" in name or name.startswith(("__x64_sys", "entry_SYSCALL", "do_syscall")):
        return f"rgb({200 + h % 55},{120 + h % 60},{60 + h % 40})"
    return f"rgb({220 + h % 35},{90 + h % 110},{40 + h % 50})"


def render_svg(folded, title, width=1400, frame_h=16, per_cmd=None, total_w=None):
    root = build_tree(folded)
    total = root["v"] or 1

    def depth(node):
        return 1 + max((depth(c) for c in node["c"].values()), default=0)

    levels = depth(root)
    height = levels * frame_h + 60
    out = [f'<?xml version="1.0" standalone="no"?>',
           f'<svg version="1.1" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="monospace" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f0"/>',
           f'<text x="{width // 2}" y="20" text-anchor="middle" font-size="15">'
           f'{html.escape(title)}</text>',
           f'<text x="10" y="40" font-size="11">{total} samples (weighted); hover a frame for '
           f'its share; width = share of all samples; bottom = outermost frame</text>']
    xpad = 10
    scale = (width - 2 * xpad) / total
    char_w = 6.6

    def draw(node, x, level):
        w = node["v"] * scale
        if w < 1.0:  # narrower than a pixel: its share is in its parent's tooltip
            return
        y = height - (level + 1) * frame_h - 4
        share = 100.0 * node["v"] / total
        tip = f'{node["n"]} — {share:.2f}%'
        if per_cmd and total_w:
            tip += f", {per_cmd * node['v'] / total_w:.1f} µs/cmd"
        out.append(f'<g><title>{html.escape(tip)}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{frame_h - 1}" '
                   f'fill="{color(node["n"])}" rx="1"/>')
        n_chars = int((w - 4) / char_w)
        if n_chars >= 3:
            label = node["n"] if len(node["n"]) <= n_chars else node["n"][:n_chars - 2] + ".."
            out.append(f'<text x="{x + 2:.2f}" y="{y + frame_h - 5}">{html.escape(label)}</text>')
        out.append("</g>")
        cx = x
        for child in sorted(node["c"].values(), key=lambda c: c["n"]):
            draw(child, cx, level + 1)
            cx += child["v"] * scale

    draw(root, xpad, 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---- summary -----------------------------------------------------------------

OUR_CODE = re.compile(r"^(http_|exec_|api_|auth_|store_|db_|tunnel_|worker_main|workers_|job_|"
                      r"json_on|run_exec|run_query|agent_runner|router_|log_fields|log_msg|sse_|"
                      r"audit_(write|flush|submit|end)|result_json|proto_|agent_outq|agent_frame|"
                      r"sqlite_|fill_audit|argv_json|dispatch|token_hash|spawn_child|on_receive|"
                      r"on_writeable|handle_exec|handle_text|deliver|read_pipe|cached_prepare|"
                      r"write_fixed|cluster_kubectl|access_log)")


def summary(samples, folded, per_cmd, top):
    by_comm = collections.Counter()
    self_by_comm = collections.defaultdict(collections.Counter)
    incl = collections.defaultdict(collections.Counter)
    for comm, frames, w in samples:
        by_comm[comm] += w
        if frames:
            self_by_comm[comm][frames[-1]] += w
        for f in set(frames):
            incl[comm][f] += w
    total = sum(by_comm.values()) or 1
    lines = []

    def fmt(v):
        s = f"{100.0 * v / total:6.2f}%"
        if per_cmd:
            # samples are weighted by period (ns for cpu-clock): µs of CPU per command
            s += f" {v / 1000.0 / per_cmd:8.1f} µs/cmd"
        return s

    lines.append(f"total: {total} (sum of sample periods; ns of CPU for cpu-clock)"
                 + (f", {per_cmd} commands" if per_cmd else ""))
    lines.append("")
    lines.append("== by process (comm)")
    for comm, v in by_comm.most_common():
        lines.append(f"  {fmt(v)}  {comm}")
    for comm, _ in by_comm.most_common(4):
        lines.append("")
        lines.append(f"== {comm}: top {top} self (where the CPU is spent)")
        for f, v in self_by_comm[comm].most_common(top):
            lines.append(f"  {fmt(v)}  {f}")
        ours = [(f, v) for f, v in incl[comm].most_common() if OUR_CODE.match(f)]
        if ours:
            lines.append(f"== {comm}: top {top} inclusive, our functions (with callees)")
            for f, v in ours[:top]:
                lines.append(f"  {fmt(v)}  {f}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf-data", help="run `perf script` on this file (else read stdin)")
    ap.add_argument("--out", required=True, help="path prefix: writes .folded .svg .txt")
    ap.add_argument("--title", default="aurora: kubectl round trip (server + agent)")
    ap.add_argument("--per-command", type=int, default=0,
                    help="commands run while recording: report µs of CPU per command")
    ap.add_argument("--comm", default="",
                    help="comma-separated process names to keep (default: all)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    if args.perf_data:
        p = subprocess.Popen(["perf", "script", "-i", args.perf_data, "-F",
                              "comm,pid,tid,time,period,event,ip,sym,dso"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             errors="replace")
        src = p.stdout
    else:
        src = sys.stdin
    keep = set(c for c in args.comm.split(",") if c)
    samples = []
    folded = collections.Counter()
    for comm, frames, w in read_samples(src):
        comm = process_name(comm)
        if keep and comm not in keep:
            continue
        samples.append((comm, frames, w))
        folded[";".join([comm] + frames)] += w
    if args.perf_data:
        p.wait()
    if not samples:
        sys.exit("perf_fold: no samples read")
    with open(args.out + ".folded", "w") as f:
        for stack, v in sorted(folded.items()):
            f.write(f"{stack} {v}\n")
    total = sum(folded.values())
    with open(args.out + ".svg", "w") as f:
        f.write(render_svg(folded, args.title, per_cmd=(total / 1000.0 / args.per_command)
                           if args.per_command else None, total_w=total))
    text = summary(samples, folded, args.per_command, args.top)
    with open(args.out + ".txt", "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
