"""``python -m benchmarks.faults.tcp_proxy LISTEN_PORT TARGET_PORT [TRAFFIC_FILE]``: forward
127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT, one thread pair per connection. With
TRAFFIC_FILE, the bytes forwarded towards the server so far are written there (every 256 KiB),
so the campaign can kill the proxy while an upload is under way rather than after a guess.

The outage campaign SIGKILLs this process: every open connection drops at once and new ones are
refused until it is started again, while the S3 server behind it keeps its objects (moto holds
them in memory, so killing moto itself would also erase what was stored before the outage).
"""

from __future__ import annotations

import socket
import sys
import threading


class Traffic:
    """Bytes sent towards the server, mirrored to a file."""

    def __init__(self, path: str | None) -> None:
        self.path, self.total, self.written, self.lock = path, 0, 0, threading.Lock()

    def add(self, count: int) -> None:
        if self.path is None:
            return
        with self.lock:
            self.total += count
            if self.total - self.written >= 1 << 18:
                with open(self.path, "w", encoding="utf-8") as out:
                    out.write(str(self.total))
                self.written = self.total


def pipe(source: socket.socket, sink: socket.socket, traffic: Traffic | None = None) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
            if traffic is not None:
                traffic.add(len(data))
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listen_port: int, target_port: int, traffic: Traffic) -> None:
    server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream, traffic), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), Traffic(sys.argv[3] if len(sys.argv) > 3 else None))
