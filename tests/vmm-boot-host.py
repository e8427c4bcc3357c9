#!/usr/bin/env python3
"""Host side of tests/vmm-boot.sh: the peer of tests/guest/vmm-test-init.

Three jobs in parallel threads, until all are done or --timeout passes:

  vsock-out  serve the Unix socket <uds>_5000 (where kiln-vmm connects a
             guest's connect to CID 2 port 5000): read "ping-from-guest\\n",
             answer "pong\\n"
  vsock-in   connect to <uds> and write "CONNECT 6000\\n"; kiln-vmm answers
             "OK <host port>\\n" once the guest accepts, or closes the socket
             while the guest is not listening yet (then retry); send
             "hello-from-host\\n", expect "hi-host\\n"
  tcp        accept one TCP connection on --addr:--port, read to EOF, answer
             "got <N>\\n", and time the stream

The rate is measured from the moment the first --burst bytes (the rate
limiter's initial bucket, which goes out at once) have arrived to the last
byte, so the burst does not inflate it; the first-to-last-byte rate is
reported too.  Bytes on the wire include the Ethernet/IP/TCP headers of
each segment, which the limiter charges and the payload does not carry:
frame_rate = payload_rate * (mss + headers) / mss.

Writes one JSON object to --out (and prints it); exit 0 when every job
succeeded.
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

VSOCK_OUT_PORT = 5000
VSOCK_IN_PORT = 6000


def log(msg):
    print("vmm-boot-host: " + msg, file=sys.stderr, flush=True)


def read_line(sock, limit=256):
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        c = sock.recv(1)
        if not c:
            break
        buf += c
    return buf


class Stop(Exception):
    pass


def on_term(signum, frame):
    raise Stop()


class Host:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.timeout
        self.result = {"vsock_out": None, "vsock_in": None, "tcp": None}
        self.lock = threading.Lock()

    def left(self):
        return max(0.0, self.deadline - time.monotonic())

    def set(self, key, value):
        with self.lock:
            self.result[key] = value

    # guest -> host: kiln-vmm connects to <uds>_5000
    def vsock_out(self, srv):
        try:
            srv.settimeout(self.left())
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(max(1.0, self.left()))
                line = read_line(conn)
                if line != b"ping-from-guest\n":
                    self.set("vsock_out", {"ok": False, "error": "got %r" % line})
                    return
                conn.sendall(b"pong\n")
                # Wait for the guest's close so the answer is not cut off.
                try:
                    conn.recv(16)
                except OSError:
                    pass
            self.set("vsock_out", {"ok": True})
        except Exception as e:  # noqa: BLE001 - reported in the result
            self.set("vsock_out", {"ok": False, "error": "%s: %s" % (type(e).__name__, e)})

    # host -> guest: CONNECT 6000 through kiln-vmm's socket
    def vsock_in(self):
        tries = 0
        last = "never connected"
        while self.left() > 0:
            tries += 1
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(min(10.0, max(0.5, self.left())))
                s.connect(self.args.uds)
                s.sendall(b"CONNECT %d\n" % VSOCK_IN_PORT)
                line = read_line(s)
                if not line.startswith(b"OK "):
                    # The guest is not listening yet: kiln-vmm closed us.
                    last = "answer %r" % line
                    s.close()
                    time.sleep(0.5)
                    continue
                s.sendall(b"hello-from-host\n")
                reply = read_line(s)
                if reply != b"hi-host\n":
                    self.set("vsock_in", {"ok": False, "tries": tries, "error": "got %r" % reply})
                else:
                    self.set("vsock_in", {"ok": True, "tries": tries, "ok_line": line.decode().strip()})
                s.close()
                return
            except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError,
                    BrokenPipeError, socket.timeout) as e:
                last = "%s: %s" % (type(e).__name__, e)
                s.close()
                time.sleep(0.5)
        self.set("vsock_in", {"ok": False, "tries": tries, "error": "timed out; last: " + last})

    def tcp(self, srv):
        a = self.args
        try:
            srv.settimeout(self.left())
            conn, peer = srv.accept()
        except Exception as e:  # noqa: BLE001
            self.set("tcp", {"ok": False, "error": "accept: %s" % e})
            return
        with conn:
            conn.settimeout(max(1.0, self.left()))
            total = 0
            t_first = t_last = t_burst = None
            b_burst = 0
            try:
                while True:
                    data = conn.recv(1 << 18)
                    now = time.monotonic()
                    if not data:
                        break
                    if t_first is None:
                        t_first = now
                    total += len(data)
                    t_last = now
                    if t_burst is None and total >= a.burst_payload:
                        t_burst, b_burst = now, total
                mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
                info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
                conn.sendall(b"got %d\n" % total)
            except Exception as e:  # noqa: BLE001
                self.set("tcp", {"ok": False, "bytes": total, "error": "%s: %s" % (type(e).__name__, e)})
                return
        # tcpi_options is byte 5 of struct tcp_info; bit 0 = timestamps.
        ts = bool(struct.unpack_from("B", info, 5)[0] & 1)
        frame = mss + (12 if ts else 0) + 20 + 20 + 14
        res = {"ok": total == a.bytes, "bytes": total, "peer": peer[0], "mss": mss,
               "timestamps": ts, "frame_bytes": frame}
        if total != a.bytes:
            res["error"] = "received %d bytes, want %d" % (total, a.bytes)
        if t_first is not None and t_last > t_first:
            res["first_to_last_s"] = t_last - t_first
            res["payload_rate_naive"] = (total - 0) / (t_last - t_first)
        if t_burst is not None and t_last > t_burst:
            res["window_s"] = t_last - t_burst
            res["payload_rate"] = (total - b_burst) / (t_last - t_burst)
            res["frame_rate"] = res["payload_rate"] * frame / mss
        self.set("tcp", res)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uds", required=True, help="kiln-vmm's vsock uds_path")
    p.add_argument("--addr", default="172.31.0.1")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--bytes", type=int, required=True, help="bytes the guest sends")
    p.add_argument("--burst", type=int, default=0, help="the limiter's bucket size in frame bytes")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", required=True, help="where to write the JSON result")
    p.add_argument("--ready", help="file created once every socket listens")
    a = p.parse_args()
    # The burst in payload bytes (frames of ~1514 bytes carry ~1448).
    a.burst_payload = max(1, a.burst * 1448 // 1514)

    host = Host(a)
    out_path = "%s_%d" % (a.uds, VSOCK_OUT_PORT)
    try:
        os.unlink(out_path)
    except FileNotFoundError:
        pass
    usrv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    usrv.bind(out_path)
    usrv.listen(4)
    tsrv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tsrv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tsrv.bind((a.addr, a.port))
    tsrv.listen(1)
    if a.ready:
        open(a.ready, "w").close()

    threads = [threading.Thread(target=host.vsock_out, args=(usrv,), daemon=True),
               threading.Thread(target=host.vsock_in, daemon=True),
               threading.Thread(target=host.tcp, args=(tsrv,), daemon=True)]
    # SIGTERM (the VM ended early): report what is done and exit.
    signal.signal(signal.SIGTERM, on_term)
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(host.left() + 1)
    except Stop:
        log("stopped by SIGTERM")
    usrv.close()
    tsrv.close()
    try:
        os.unlink(out_path)
    except FileNotFoundError:
        pass
    with host.lock:
        res = dict(host.result)
    for k, v in res.items():
        if v is None:
            res[k] = {"ok": False, "error": "did not finish"}
    res["ok"] = all(v["ok"] for k, v in res.items() if isinstance(v, dict))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    log(json.dumps(res, sort_keys=True))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
