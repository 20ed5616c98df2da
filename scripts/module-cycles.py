#!/usr/bin/env python3
"""Lists the crate's module dependency graph (from `use crate::...` and
`crate::x::` paths) and fails if modules import each other in a cycle.

A module is a file under src/ (src/a/b.rs is `a::b`, src/a/mod.rs is `a`);
a submodule's use of its own parent is not counted (that is nesting, not
an import). Usage: scripts/module-cycles.py [--graph]
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"

mods = {}
for d, _, files in os.walk(ROOT):
    for f in files:
        # main.rs is the binary, a crate of its own.
        if f.endswith(".rs") and not (d == ROOT and f == "main.rs"):
            p = os.path.join(d, f)
            mods[module_of(p)] = p

def strip_tests(src):
    # Test modules may import anything; only the shipped code counts.
    i = src.find("#[cfg(test)]\nmod tests")
    return src if i < 0 else src[:i]

def resolve(name):
    """The longest known module prefix of a crate path; an item of the
    crate root (`crate::Error`) is the root itself."""
    parts = [p for p in name.split("::") if p]
    while parts:
        cand = "::".join(parts)
        if cand in mods:
            return cand
        parts.pop()
    return "crate"

edges = {m: set() for m in mods}
for m, p in mods.items():
    src = strip_tests(open(p).read())
    src = re.sub(r"//[^\n]*", "", src)
    for use in re.findall(r"\buse\s+crate::\{([^;]*)\};", src, re.S):
        for item in re.split(r",\s*(?![^{]*\})", use):
            item = item.strip()
            if item:
                edges[m].add(resolve(re.split(r"::\{|\s", item)[0].rstrip(":")))
    for path in re.findall(r"\bcrate::((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", src):
        edges[m].add(resolve(path))
    # A module names its own submodules without `crate::`.
    for path in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([a-z_][a-z0-9_]*)::", src, re.M):
        child = path if m == "crate" else m + "::" + path
        if child in mods:
            edges[m].add(child)
    for path in re.findall(r"\bsuper::([a-z_][a-z0-9_:]*)", src):
        base = m.rsplit("::", 1)[0] if "::" in m else "crate"
        edges[m].add(resolve((base + "::" if base != "crate" else "") + path))

# A parent that uses its submodule and a submodule that uses its parent
# are a cycle too: the submodule then reaches into its parent's insides.
for m in edges:
    edges[m].discard(m)

if "--graph" in sys.argv:
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m])) or '-'}")

# Tarjan's strongly connected components.
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in sorted(edges):
    if v not in index:
        visit(v)
if sccs:
    for c in sccs:
        print("import cycle:", " <-> ".join(c))
    sys.exit(1)
print(f"no import cycles among {len(edges)} modules")
