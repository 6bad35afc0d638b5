#!/usr/bin/env python3
"""agent_size.py MAP [MAP...] — the static agent's size by library, from the
GNU ld link maps scripts/build-static-agent.sh writes (<binary>.map), one
column per map, side by side (issue 14).  Counted: the allocated input
sections the linker kept after --gc-sections (code and read-only data, data,
unwind tables); .bss takes no room in the file.  --objects N also lists the N
biggest objects of the first map.  Python 3 stdlib only."""

import argparse
import collections
import os
import re
import sys

ALLOC = re.compile(r"^\.(text|rodata|data|tdata|eh_frame|gcc_except_table|init_array|fini_array|"
                   r"data\.rel\.ro|rela|got|note)")


def read_map(path):
    by_lib = collections.Counter()
    by_obj = collections.Counter()
    started = False
    pending = None
    with open(path) as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if ln.startswith("Linker script and memory map"):
                started = True
                continue
            if not started:
                continue
            if ln.startswith("/DISCARD/"):
                break
            m = re.match(r"^ (\.\S+)\s*$", ln)
            if m:  # a long section name: address, size and file on the next line
                pending = m.group(1)
                continue
            m = re.match(r"^ (\.\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$", ln)
            if not m:
                pending = None
                continue
            sec, pending = m.group(1) or pending, None
            if not sec or not ALLOC.match(sec) or int(m.group(2), 16) == 0:
                continue
            size, src = int(m.group(3), 16), m.group(4)
            a = re.search(r"(lib[\w+-]+\.a)\(([^)]+)\)", src)
            if a:
                lib, obj = a.group(1), a.group(2)
            elif "/obj" in src:
                lib, obj = "agent + common (ours)", os.path.basename(src)
            else:
                lib, obj = "crt/other", os.path.basename(src)
            kind = "unwind" if sec.startswith((".eh_frame", ".gcc_except")) else "code+data"
            by_lib[(lib, kind)] += size
            by_obj[(lib, obj)] += size
    return by_lib, by_obj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("maps", nargs="+")
    ap.add_argument("--objects", type=int, default=0)
    args = ap.parse_args()
    maps = [m for m in args.maps if os.path.exists(m)]
    if not maps:
        print("agent-size: no link map (build with scripts/build-static-agent.sh)", file=sys.stderr)
        return 1
    data = [read_map(m) for m in maps]
    libs = sorted({lib for d in data for (lib, _) in d[0]},
                  key=lambda lib: -max(d[0][(lib, "code+data")] + d[0][(lib, "unwind")]
                                       for d in data))
    names = [os.path.basename(m)[:-4] for m in maps]
    print("== static agent size by library (KiB linked, from the link maps; unwind tables "
          "in brackets)")
    print("  %-24s" % "library" + "".join("%28s" % n for n in names))
    totals = [0] * len(data)
    for lib in libs:
        cells = []
        for i, (by_lib, _) in enumerate(data):
            code, unw = by_lib[(lib, "code+data")], by_lib[(lib, "unwind")]
            totals[i] += code + unw
            cells.append("%18.1f [%6.1f]" % ((code + unw) / 1024, unw / 1024) if code + unw else
                         "%27s" % "-")
        if any(data[i][0][(lib, "code+data")] + data[i][0][(lib, "unwind")] >= 4096
               for i in range(len(data))):
            print("  %-24s" % lib + "".join(" " + c for c in cells))
    print("  %-24s" % "total" + "".join("%19.1f%9s" % (t / 1024, "") for t in totals))
    for m in maps:
        b = m[:-4]
        if os.path.exists(b):
            print("  %s stripped: %.1f KiB" % (b, os.path.getsize(b) / 1024))
    if args.objects:
        print("== biggest objects in %s" % names[0])
        for (lib, obj), size in data[0][1].most_common(args.objects):
            print("  %8.1f KiB  %-22s %s" % (size / 1024, lib, obj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
