import sys
from pathlib import Path

# test helpers (pcapbuild, capbuild, oracles) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
