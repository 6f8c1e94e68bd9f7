"""diagnose: turn a packet capture into a diagnosis."""

__version__ = "0.1.0"
