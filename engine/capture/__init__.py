"""Reading captures: classic pcap, pcapng, gzip-compressed either, or standard input."""

from diagnose.capture.pcapng import Interface, Secret, Section
from diagnose.capture.reader import Capture, CaptureInfo, Chunk, open_capture

__all__ = ["Capture", "CaptureInfo", "Chunk", "Interface", "Secret", "Section", "open_capture"]
