"""Capture files: pcap, pcapng, gzip; link, IP and TCP header decoding.

Only this package touches files. It yields packets in file order, numbered from 1 exactly
as Wireshark numbers them.
"""

from .reader import CaptureReader, Packet, open_capture

__all__ = ["CaptureReader", "Packet", "open_capture"]
