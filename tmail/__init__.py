"""tmail: temporary e-mail aliases forwarded through an existing Postfix.

Kept empty of imports on purpose: the pipe entry point (tmail.mailpath.deliver)
runs once per message and must not pay for anything it does not use.
"""
__version__ = "0.1.0"
