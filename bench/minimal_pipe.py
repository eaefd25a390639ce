"""The baseline pipe script: the least a pipe(8) forwarder can do with the
standard library (read the message, reinject it with smtplib to the same
loopback listener tmail uses). No database, no SRS, no checks.

    argv=/usr/bin/python3 minimal_pipe.py PORT DESTINATION ${sender}
"""
import smtplib
import sys


def main():
    port, destination, sender = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    data = sys.stdin.buffer.read()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail(sender, [destination], data)
    except Exception as exc:  # defer, like tmail
        print(f"4.3.0 {exc}")
        sys.exit(75)


main()
