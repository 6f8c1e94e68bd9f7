"""Per-connection facts: Zeek's conn_state/history (zeek.py) and the flow facts rules read as `flow.*` (facts.py)."""
