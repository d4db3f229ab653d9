#!/usr/bin/env bash
# Check that every documentation link with an anchor resolves.
#
# Scans crates/, README.md and docs/ for references of the form
#   docs/<path>.md#<anchor>
# and, inside docs/, for relative Markdown links of the form
#   (<path>.md#<anchor>)
# A reference resolves when the file exists and contains either an explicit HTML anchor
# (<a id="anchor"> or name="anchor") or a heading whose GitHub-style slug equals the anchor.
# Exits 1 and lists the unresolved references otherwise.
#
# Usage: scripts/check_doc_links.sh   (from anywhere inside the repository)

set -euo pipefail
here=$(dirname "$0")
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
cd "$root"

python3 - <<'PY'
import os
import re
import subprocess
import sys

def tracked_and_new(paths):
    """Files under `paths` known to git (tracked or untracked but not ignored)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
            check=True, capture_output=True, text=True).stdout
        return [p for p in out.splitlines() if os.path.isfile(p)]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for p in paths:
            if os.path.isfile(p):
                files.append(p)
            for root, _, names in os.walk(p):
                files.extend(os.path.join(root, n) for n in names)
        return files

def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s, flags=re.UNICODE)
    return s.replace(" ", "-")

anchor_cache = {}
def anchors(path):
    if path not in anchor_cache:
        found = set()
        with open(path, encoding="utf-8") as f:
            in_fence = False
            for line in f:
                if line.lstrip().startswith("```"):
                    in_fence = not in_fence
                for m in re.finditer(r'<a\s+(?:id|name)="([^"]+)"', line):
                    found.add(m.group(1))
                if not in_fence:
                    m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
                    if m:
                        found.add(slug(m.group(1)))
        anchor_cache[path] = found
    return anchor_cache[path]

ABS = re.compile(r"(?<![\w/.-])(docs/[A-Za-z0-9_./-]+?\.md)#([A-Za-z0-9_-]+)")
REL = re.compile(r"\]\(([A-Za-z0-9_./-]+?\.md)#([A-Za-z0-9_-]+)\)")

files = [f for f in tracked_and_new(["crates", "README.md", "docs"])
         if f.endswith((".rs", ".md", ".toml", ".txt", ".html", ".sh"))]
bad = []
checked = 0
for src in files:
    with open(src, encoding="utf-8", errors="replace") as f:
        text = f.read()
    refs = [(m.group(1), m.group(2), m.start()) for m in ABS.finditer(text)]
    if src.startswith("docs/") and src.endswith(".md"):
        for m in REL.finditer(text):
            target = os.path.normpath(os.path.join(os.path.dirname(src), m.group(1)))
            refs.append((target, m.group(2), m.start()))
    for target, anchor, pos in refs:
        checked += 1
        line = text.count("\n", 0, pos) + 1
        if not os.path.isfile(target):
            bad.append(f"{src}:{line}: {target}#{anchor}: no such file")
        elif anchor not in anchors(target):
            bad.append(f"{src}:{line}: {target}#{anchor}: no such anchor")

for b in bad:
    print(b)
print(f"check_doc_links: {checked} references, {len(bad)} unresolved", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
