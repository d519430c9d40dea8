#!/usr/bin/env python3
"""Where a limb's memory goes, from a /proc/<pid>/smaps dump (the density bench writes
them with DENSITY_SMAPS=<prefix>): the mappings grouped by what wasmtime and the limb
use them for, with their RSS and PSS in total and per device.

    scripts/smaps-summary.py DEVICES FILE [FILE ...]
"""
import collections
import re
import sys

GIB = 1 << 30
MIB = 1 << 20


def mappings(path):
    out, cur = [], None
    with open(path) as f:
        for line in f:
            head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if head:
                start, end = int(head.group(1), 16), int(head.group(2), 16)
                cur = {"size": end - start, "perm": head.group(3), "name": head.group(4)}
                out.append(cur)
            elif cur is not None:
                key, _, value = line.partition(":")
                fields = value.split()
                if fields and fields[0].isdigit():
                    cur[key] = int(fields[0])
    return out


def kind(m, stack_sizes):
    name, size = m["name"], m["size"]
    if "wasm-memory-image" in name:
        return "guest memory: copy-on-write image (data segments)"
    if name.startswith("/"):
        return "files (code, libraries)"
    if name in ("[heap]",) or (not name and m["perm"] == "rw-p" and size >= 8 * MIB):
        return "host heap (malloc)"
    if name:
        return name
    if size >= 4 * GIB:
        return "guest memory: reservation (not resident)"
    if size in stack_sizes and m["perm"] == "rw-p":
        return "fiber stacks (one per instance)"
    if m["perm"] == "---p":
        return "guard pages (not resident)"
    if m["perm"] == "rw-p" and size == MIB:
        return "guest memory: stack region"
    if m["perm"] == "rw-p" and size < MIB:
        return "guest memory: heap beyond the image, and small maps"
    return f"other anonymous ({m['perm']})"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    devices = int(sys.argv[1])
    stack_sizes = {2 * MIB, 2 * MIB + 4096}
    for path in sys.argv[2:]:
        groups = collections.defaultdict(lambda: [0, 0, 0])
        for m in mappings(path):
            g = groups[kind(m, stack_sizes)]
            g[0] += 1
            g[1] += m.get("Rss", 0)
            g[2] += m.get("Pss", 0)
        print(f"{path} ({devices} devices)")
        print(f"| mappings | count | RSS per device | PSS per device |\n| --- | --- | --- | --- |")
        for name, (n, rss, pss) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
            if rss == 0 and pss == 0:
                continue
            print(f"| {name} | {n} | {rss / devices:.1f} KiB | {pss / devices:.1f} KiB |")
        print()


if __name__ == "__main__":
    main()
