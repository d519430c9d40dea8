#!/usr/bin/env python3
"""Waits until every device of two or more limbs is Connected, then compares their
status documents; for scripts/test-cross.sh.

    compare-limbs.py DEADLINE_S NAME=URL NAME=URL...

Polls each limb's /devices (every 100 ms, until DEADLINE_S seconds have passed) and
keeps what each device reported after each of its polls. A simulated device's values
depend on how many polls it has had (the dummy adaptor's generator is seeded from the
link and advances once a poll), and the limbs started at different times, so documents
are compared at the same poll count: the highest count every limb was seen at.

Compared: the adaptor's status document, the phase, the conditions (types, statuses,
reasons, messages), the model, the adaptor's name, version and digest, and the last
error. Not compared: times, poll and event counters, events. Exits 1 with a unified
diff when they differ, or with what was missing when the deadline passes.
"""

import difflib
import json
import sys
import time
import urllib.request

TIME_KEYS = {"lastTransitionTime", "lastUpdateTime", "lastProbeTime", "updatedAt", "time"}


def without_times(value):
    """The value with every timestamp field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def comparable(report):
    """What must be equal between two architectures."""
    return without_times(
        {
            "status": report.get("status"),
            "phase": report.get("phase"),
            "conditions": report.get("conditions"),
            "model": report.get("model"),
            "adaptor": report.get("adaptor"),
            "adaptorVersion": report.get("adaptorVersion"),
            "adaptorDigest": report.get("adaptorDigest"),
            "lastError": report.get("lastError"),
        }
    )


def connected(report):
    return any(
        c.get("type") == "DeviceConnected" and c.get("status") == "True"
        for c in report.get("conditions") or []
    )


def fetch(url):
    try:
        with urllib.request.urlopen(url + "/devices", timeout=2) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def main():
    deadline = time.monotonic() + float(sys.argv[1])
    limbs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    # limb -> device key -> polls -> comparable document (only Connected ones)
    seen = {name: {} for name in limbs}
    latest = {name: None for name in limbs}
    while True:
        for name, url in limbs.items():
            devices = fetch(url)
            if devices is None:
                continue
            latest[name] = devices
            for d in devices:
                if connected(d):
                    key = f"{d['namespace']}/{d['name']}"
                    seen[name].setdefault(key, {})[d.get("polls", 0)] = comparable(d)
        verdict = judge(seen, latest)
        if verdict is not None:
            return verdict
        if time.monotonic() > deadline:
            print(f"not every device was Connected in every limb within {sys.argv[1]} s:")
            for name in limbs:
                state = [
                    (f"{d['namespace']}/{d['name']}", d.get("phase"), connected(d), d.get("lastError"))
                    for d in latest[name] or []
                ]
                print(f"  {name}: {state if latest[name] is not None else 'no answer from /devices'}")
            return 1
        time.sleep(0.1)


def judge(seen, latest):
    """None while waiting; else the exit code, after printing the outcome."""
    if any(v is None or len(v) == 0 for v in latest.values()):
        return None
    keys = [sorted(f"{d['namespace']}/{d['name']}" for d in v) for v in latest.values()]
    if any(k != keys[0] for k in keys):
        return None
    common = {}
    for key in keys[0]:
        counts = [set(seen[name].get(key, {})) for name in seen]
        shared = set.intersection(*counts)
        if not shared:
            return None
        common[key] = max(shared)
    names = list(seen)
    failed = False
    for key, polls in common.items():
        first = json.dumps(seen[names[0]][key][polls], indent=2, sort_keys=True).splitlines()
        for other in names[1:]:
            doc = json.dumps(seen[other][key][polls], indent=2, sort_keys=True).splitlines()
            if doc != first:
                failed = True
                print(f"{key} after poll {polls}: {names[0]} and {other} differ")
                for line in difflib.unified_diff(first, doc, names[0], other, lineterm=""):
                    print("  " + line)
            else:
                print(f"{key}: same status after poll {polls} in {names[0]} and {other}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
