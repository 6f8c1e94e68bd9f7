import os
import sys
from pathlib import Path

# test helpers (pcapbuild, capbuild, oracles) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

# Built-in playbook self-tests name captures as lab/NAME.pcap; an installed package finds them through this folder
# (subprocesses inherit it).
os.environ.setdefault("DIAGNOSE_LAB_DIR", str(Path(__file__).parent / "data"))
