"""The guard and delivery sockets under a burst of connections."""
import socket
import threading

from tmail.mailpath.servers import guard_server


def test_guard_answers_a_burst_of_simultaneous_clients(tmp_path):
    server = guard_server(str(tmp_path / "policy.sock"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        clients = []
        for _ in range(100):  # all connected before any is served
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(10)
            client.connect(str(tmp_path / "policy.sock"))
            clients.append(client)
        for client in clients:
            client.sendall(b"request=smtpd_access_policy\nrecipient=a@d.test\n\n"
                           b"request=smtpd_access_policy\nrecipient=b@d.test\n\n")
        for client in clients:
            data = b""
            while data.count(b"\n\n") < 2:
                data += client.recv(100)
            assert data == b"action=DUNNO\n\naction=DUNNO\n\n"
            client.close()
    finally:
        server.shutdown()
        server.server_close()
