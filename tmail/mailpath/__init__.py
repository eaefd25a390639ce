"""The mail path: milter, delivery daemon, pipe entry point, reinjection."""
