#!/usr/bin/env python3
"""The MSRV check that needs no second toolchain (only one can be installed
here): every locked dependency must declare a rust-version no newer than
the workspace's. Our own code is held to it by clippy's incompatible_msrv
lint, which reads the rust-version every member inherits."""
import json
import re
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"msrv: every member must inherit one rust-version; found {sorted(map(str, ours))}")
msrv = ours.pop()
# Only what the workspace actually builds: the resolved dependency graph.
used = {n["id"] for n in meta["resolve"]["nodes"]}
too_new = sorted(
    f'{p["name"]} {p["version"]} needs Rust {p["rust_version"]}'
    for p in meta["packages"]
    if p["id"] in used and p["id"] not in members and p.get("rust_version")
    and version(p["rust_version"]) > version(msrv)
)
if too_new:
    print(f"msrv: the workspace declares rust-version {msrv}, but:", *too_new, sep="\n  ")
    sys.exit(1)
print(f"msrv: every locked dependency builds on Rust {msrv}")
