"""Damaged input never makes the decoder raise or read outside the frame.

The kernels run with bounds checking off, so the check runs the decoder in a subprocess with NUMBA_BOUNDSCHECK=1
(numba then checks every array access whatever the decorator says) over every built frame cut at every length and
with bytes overwritten, each frame alone in a buffer that ends where it ends: a read past the captured bytes is an
IndexError there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import random
    import numba
    import numpy as np
    from scapy.all import IP, UDP, fragment
    import capbuild as cb
    from diagnose.decode import FragmentReassembler, decode_chunk, verify_checksums
    from diagnose.packet import new_table

    assert numba.config.BOUNDSCHECK == 1

    @numba.njit(boundscheck=False)
    def canary(a):
        return a[a.shape[0] + 5]
    try:
        canary(np.zeros(1, np.uint8))
        raise SystemExit("bounds checking is not on: the test would prove nothing")
    except IndexError:
        pass

    frames = []
    for inner in (cb.tcp_syn(), cb.tcp6_data(), cb.udp4()):
        frames += cb.link_variants(inner).values()
        frames += cb.tunnel_variants(inner).values()
    frames += [f for f, _ in cb.icmp_errors().values()]
    frames += list(cb.echo_frames().values()) + list(cb.arp_frames().values())
    frames += [cb.frame(cb.Ether() / f) for f in fragment(IP(id=1) / UDP() / (b"q" * 1500), fragsize=600)]

    def run(data, linktype, wirelen):
        buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()  # the frame ends where the buffer ends
        table = new_table(1)
        table["caplen"], table["wirelen"], table["linktype"], table["data"] = len(buf), wirelen, linktype, 0
        buf = decode_chunk(buf, table, FragmentReassembler())
        verify_checksums(buf, table)

    rng = random.Random(20240601)
    cases = 0
    for f in frames:
        for n in range(len(f.data) + 1):  # cut at every length
            run(f.data[:n], f.linktype, f.wirelen)
            cases += 1
        for _ in range(150):  # overwrite 1-3 header bytes with extreme or random values
            data = bytearray(f.data)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(min(len(data), 96))] = rng.choice((0, 0xFF, rng.randrange(256)))
            cut = rng.randint(0, len(data))
            run(data[:cut] if rng.random() < 0.3 else data, f.linktype, f.wirelen)
            cases += 1
    for linktype in (0, 1, 12, 101, 105, 108, 113, 127, 228, 229, 276):  # random bytes behind every link type
        for _ in range(300):
            run(bytes(rng.randrange(256) for _ in range(rng.randint(0, 120))), linktype, 1500)
            cases += 1
    print("cases", cases)
''')


def test_damaged_frames_never_read_out_of_bounds(tmp_path):
    tests_dir = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["NUMBA_BOUNDSCHECK"] = "1"
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")  # bounds-checked kernels must not mix with the normal cache
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    cases = int(done.stdout.split()[-1])
    assert cases > 20_000
