"""``python -m benchmarks.faults.tcp_proxy LISTEN_PORT TARGET_PORT``: forward 127.0.0.1:LISTEN_PORT
to 127.0.0.1:TARGET_PORT, one thread pair per connection.

The outage campaign SIGKILLs this process: every open connection drops at once and new ones are
refused until it is started again, while the S3 server behind it keeps its objects (moto holds
them in memory, so killing moto itself would also erase what was stored before the outage).
"""

from __future__ import annotations

import socket
import sys
import threading


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listen_port: int, target_port: int) -> None:
    server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
