"""The resolver port: a lookup may be given less time than the configured timeout."""
import socket
import time

from tmail.resolver import Resolver


def test_a_txt_lookup_honours_a_shorter_timeout():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a DNS server that never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = Resolver([("127.0.0.1", silent.getsockname()[1])], timeout=30)
        started = time.monotonic()
        assert resolver.txt("_dmarc.example.test", timeout=0.3) is None    # a temporary failure
        assert time.monotonic() - started < 10
    finally:
        silent.close()
