"""Packet filters: Wireshark display filters (`-Y`, playbook rules) and capture filters (`-f`, pcap-filter(7)).

    from diagnose.filters import compile_display_filter, compile_bpf, BpfFilter, ChunkContext, check_filter
    flt = compile_display_filter("tcp.flags.reset == 1")   # FilterError if wrong (column, one line)
    mask = flt.evaluate(ChunkContext(buf, table))           # boolean mask over the chunk's rows
"""

from diagnose.fields.context import ChunkContext, iter_contexts
from diagnose.filters.display_compile import DisplayFilter, compile_display_filter

_BPF_NAMES = ("BpfFilter", "BpfProgram", "compile_bpf")


def __getattr__(name: str):
    # The capture-filter compiler (its grammar and optimiser, ~25 ms to import) loads when first used: the diagnosis
    # and every display-filter user import this package for its submodules only.
    if name in _BPF_NAMES:
        from diagnose.filters import bpf

        return getattr(bpf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_filter(text: str, language: str = "display") -> None:
    """Raise FilterError if `text` is not a valid filter of `language` ("display" or "bpf"; a BPF filter is
    compiled for Ethernet, the link type of nearly every capture)."""
    if language == "display":
        compile_display_filter(text)
    elif language == "bpf":
        from diagnose.filters.bpf import compile_bpf

        compile_bpf(text, 1)
    else:
        raise ValueError(f"unknown filter language {language!r}")


__all__ = ["BpfFilter", "BpfProgram", "ChunkContext", "DisplayFilter", "check_filter", "compile_bpf",
           "compile_display_filter", "iter_contexts"]
