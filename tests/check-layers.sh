#!/bin/sh
# tests/check-layers.sh - lib/ is layers: a module is a .c file and its .h,
# and the modules' #include "x.h" graph may have no circle (only a module and
# its own header may refer to each other).  Also: no file of lib/ includes
# internal.h (the tests' umbrella header), and every header included is in
# lib/.  Prints the layers (each module after every module it uses) and exits
# 1 with the circle when there is one.
set -eu
dir=${1:-lib}
python3 - "$dir" <<'PY'
import os, re, sys
d = sys.argv[1]
inc = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"', re.M)
deps, files = {}, {}
for f in sorted(os.listdir(d)):
    base, ext = os.path.splitext(f)
    if ext not in ('.c', '.h'):
        continue
    text = open(os.path.join(d, f)).read()
    used = set(inc.findall(text))
    if 'internal' in used and base != 'internal':
        print(f'check-layers: {d}/{f} includes internal.h, which is for the tests only')
        sys.exit(1)
    if base in ('internal', 'fmacros'):
        continue
    deps.setdefault(base, set()).update(u for u in used if u not in (base, 'fmacros', 'lmc'))
    files.setdefault(base, []).append(f)
missing = {u for s in deps.values() for u in s if u not in deps}
if missing:
    print('check-layers: headers included but not in lib/:', ', '.join(sorted(missing)))
    sys.exit(1)
# Depth-first search for a circle; layers by longest path to a leaf.
state, layer, stack = {}, {}, []
def visit(m):
    if state.get(m) == 'done':
        return layer[m]
    if state.get(m) == 'open':
        i = stack.index(m)
        print('check-layers: circle: ' + ' -> '.join(stack[i:] + [m]))
        sys.exit(1)
    state[m] = 'open'
    stack.append(m)
    layer[m] = 1 + max((visit(u) for u in deps[m]), default=-1)
    stack.pop()
    state[m] = 'done'
    return layer[m]
for m in sorted(deps):
    visit(m)
for n in range(max(layer.values()) + 1):
    print(f'layer {n}: ' + ' '.join(sorted(m for m in layer if layer[m] == n)))
PY
