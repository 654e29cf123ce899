"""Summarises massif's peak snapshot: bytes per allocation site, per connection.

Each top-level entry is followed down its first-child chain past allocator and
std frames to the first frame that names who allocated.
"""
import re
import sys

path = sys.argv[1]
per = int(sys.argv[2]) if len(sys.argv) > 2 else 1
lines = open(path).read().split("\n")
start = [k for k, line in enumerate(lines) if line.startswith("heap_tree=peak")][0]
node = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
nodes = []
for line in lines[start + 1:]:
    if line.startswith("#-----"):
        break
    m = node.match(line)
    if m:
        nodes.append((len(m.group(1)), int(m.group(3)), m.group(4)))
plumbing = re.compile(
    r"alloc/src|alloc\.rs|raw_vec|bytes_mut|vec/mod|UnknownInlinedFun|with_capacity|malloc|realloc|"
    r"calloc|boxed|unix\.rs|reserve|core/src|\?\?\?|heap allocation|Cell<T,S>::new|spawn"
)
total = nodes[0][1]
rows = []
for i, (depth, size, desc) in enumerate(nodes):
    if depth != 1:
        continue
    j = i
    while plumbing.search(nodes[j][2]) and j + 1 < len(nodes) and nodes[j + 1][0] == nodes[j][0] + 1:
        j += 1
    rows.append((size, nodes[j][2][:160]))
print(f"peak heap {total:,} B = {total / per:,.0f} B per connection")
for size, desc in sorted(rows, reverse=True)[:15]:
    print(f"{size / per:10,.0f} B/conn {100 * size / total:5.1f}%  {desc}")
