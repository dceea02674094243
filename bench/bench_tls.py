"""Channels over TLS relays (channels/tls.py) against plain channels, in the same run.

    python bench/bench_tls.py [--quick]

The peer is another process that connects and echoes channel 0 (and reads
channel 1). Plain and TLS runs alternate; each figure is the median over the
runs, and the ratio printed is the median of the ratios of neighbouring runs
(TLS / plain for times, plain / TLS for throughput) with their range.
`rt`: a small message there and back. `bulk`: 1 MB binary messages one way.
The certificate is made with the openssl command line.
"""

import os
import shutil
import ssl
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from channels import Channels  # noqa: E402
from channels.tls import accept_tls, connect_tls, server_context  # noqa: E402

KEY = b"bench key"
ADDRESS = "127.0.0.1"
LINE = "000000: the quick brown fox jumps over"


def peer(kind, port, cafile):
    c = Channels(key=KEY)
    if kind == "tls":
        relay = connect_tls(ADDRESS, port, ssl.create_default_context(cafile=cafile), 10)
        c.adopt(relay.plain, role="connector", timeout=10)
        assert c.wait_connected(10)
    else:
        c.connect(port, ADDRESS, timeout=10)
    bulk = c.get_receiving_channel(1)
    out = c.get_sending_channel(1)

    def drain_bulk():
        for message in bulk:
            if message == "done?":
                out.write(message)
    threading.Thread(target=drain_bulk, daemon=True).start()
    echo = c.get_sending_channel(0)
    for message in c.get_receiving_channel(0):
        echo.write(message)
    c.close()


class Side:
    def __init__(self, kind, context, cafile):
        self.relay = None
        self.c = Channels(key=KEY)
        if kind == "tls":
            listener = socket.socket()
            listener.bind((ADDRESS, 0))
            listener.listen(1)
            listener.settimeout(10)
            self.proc = subprocess.Popen([sys.executable, __file__, "--peer", kind,
                                          str(listener.getsockname()[1]), cafile])
            sock, _ = listener.accept()
            listener.close()
            self.relay = accept_tls(sock, context, 10)
            self.c.adopt(self.relay.plain, role="host", timeout=10)
        else:
            port = self.c.host(address=ADDRESS)
            self.proc = subprocess.Popen([sys.executable, __file__, "--peer", kind,
                                          str(port), cafile])
        assert self.c.wait_connected(10)

    def round_trip(self, count):
        out, inbox = self.c.get_sending_channel(0), self.c.get_receiving_channel(0)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            out.write(LINE)
            inbox.read_one(block=10)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def bulk(self, megabytes):
        out, inbox = self.c.get_sending_channel(1), self.c.get_receiving_channel(1)
        chunk = os.urandom(1024 * 1024)
        start = time.perf_counter()
        for _ in range(megabytes):
            out.write(chunk)
        out.write("done?")
        inbox.read_one(block=30)
        return megabytes / (time.perf_counter() - start)

    def close(self):
        self.c.close()
        self.proc.wait(10)
        if self.relay is not None:
            self.relay.close()


def main():
    quick = "--quick" in sys.argv
    if shutil.which("openssl") is None:
        sys.exit("bench_tls: needs the openssl command to make a certificate")
    runs, count, megabytes = (3, 300, 32) if quick else (7, 2000, 128)
    with tempfile.TemporaryDirectory() as directory:
        certfile = os.path.join(directory, "cert.pem")
        keyfile = os.path.join(directory, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=bench", "-addext", "subjectAltName=IP:%s" % ADDRESS,
                        "-keyout", keyfile, "-out", certfile],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        context = server_context(certfile, keyfile)
        figures = {("rt", kind): [] for kind in ("plain", "tls")}
        figures.update({("bulk", kind): [] for kind in ("plain", "tls")})
        for _ in range(runs):
            for kind in ("plain", "tls"):
                side = Side(kind, context, certfile)
                try:
                    figures["rt", kind].append(side.round_trip(count))
                    figures["bulk", kind].append(side.bulk(megabytes))
                finally:
                    side.close()
    rt = [t / p for t, p in zip(figures["rt", "tls"], figures["rt", "plain"])]
    bulk = [p / t for t, p in zip(figures["bulk", "tls"], figures["bulk", "plain"])]
    print("round trip   plain %6.1f us   tls %6.1f us   tls/plain %.2fx (%.2f-%.2f)" % (
        statistics.median(figures["rt", "plain"]) * 1e6,
        statistics.median(figures["rt", "tls"]) * 1e6,
        statistics.median(rt), min(rt), max(rt)))
    print("bulk 1 MB    plain %6.0f MB/s tls %6.0f MB/s plain/tls %.2fx (%.2f-%.2f)" % (
        statistics.median(figures["bulk", "plain"]), statistics.median(figures["bulk", "tls"]),
        statistics.median(bulk), min(bulk), max(bulk)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peer"]:
        peer(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
