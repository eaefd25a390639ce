"""The pure core: mail logic with no I/O and no third-party imports."""
