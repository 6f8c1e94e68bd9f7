"""TCP behaviour from the packet table: Wireshark-style per-packet analysis (analysis.py)."""

from .analysis import ANALYSIS_DTYPE, FLAG_FILTERS, TcpAnalyzer, matches

__all__ = ["ANALYSIS_DTYPE", "FLAG_FILTERS", "TcpAnalyzer", "matches"]
