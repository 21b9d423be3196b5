"""Deals every regular file of a corpus round-robin into N tree folders
(t0 .. tN-1 under DEST, each keeping the file's relative path), so that N
clients back up different trees of similar size.

usage: python3 bench/deal-trees.py CORPUS DEST N
"""
import os
import shutil
import sys

src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
i = 0
for d, _, fs in os.walk(src):
    for f in sorted(fs):
        p = os.path.join(d, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        out = os.path.join(dst, f"t{i % n}", os.path.relpath(p, src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copyfile(p, out)
        i += 1
