"""The per-layer helpers of the decode kernels are compiled into their caller: see diagnose.jit.inline."""

from ..jit import inline

__all__ = ["inline"]
