#!/usr/bin/env python3
"""A registry for tests/oci.sh's token-auth case, serving an OCI layout over
plain http as Docker Hub behaves: every /v2/ request needs a bearer token
from the realm (/token, basic credentials tester:s3cret), the first manifest
request is answered 429 with Retry-After: 1, tag "weird" has a media type
kiln does not know, and blobs are 307 redirects to
another host name (localhost) that refuses any Authorization header.

    oci-fake-registry.py LAYOUT PORTFILE LOGFILE [slow]
"slow" trickles blobs out at 80 KiB/s (a pull to cancel midway). Writes the port it listens on to PORTFILE and one line per request to
LOGFILE ("GET /path auth=<scheme or ->" and a note). Manifests carry
Docker-Content-Digest and answer HEAD."""
import base64
import http.server
import json
import os
import sys
import time

layout, portfile, logfile = sys.argv[1:4]
slow = sys.argv[4:5] == ["slow"]
TOKEN = "good-token"
state = {"429": 0}


def log(line):
    with open(logfile, "a") as f:
        f.write(line + "\n")


def index():
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body=b"", ctype="application/json", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        log("%s %s auth=%s" % (self.command, self.path, auth.split(" ")[0] if auth else "-"))
        port = self.server.server_address[1]
        if self.path.startswith("/token?"):
            want = "Basic " + base64.b64encode(b"tester:s3cret").decode()
            if auth != want:
                return self.reply(401)
            if "scope=repository%3Atest%2Fmulti%3Apull" not in self.path or "service=fake" not in self.path:
                return self.reply(400)
            return self.reply(200, json.dumps({"access_token": TOKEN, "expires_in": 300}).encode())
        if self.path.startswith("/cdn/"):
            if auth:
                log("cdn got an Authorization header")
                return self.reply(400)
            with open(os.path.join(layout, "blobs", "sha256", self.path[len("/cdn/sha256:"):]), "rb") as f:
                body = f.read()
            if not slow:
                return self.reply(200, body, "application/octet-stream")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 8192):
                    self.wfile.write(body[i:i + 8192])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                log("blob download dropped by the client")
            return
        if not self.path.startswith("/v2/"):
            return self.reply(404)
        if auth != "Bearer " + TOKEN:
            chal = 'Bearer realm="http://127.0.0.1:%d/token",service="fake"' % port
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                              headers=[("WWW-Authenticate", chal)])
        parts = self.path.split("/")
        if len(parts) < 5 or "/".join(parts[2:-2]) != "test/multi":
            return self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
        kind, ref = parts[-2], parts[-1]
        if kind == "blobs":
            return self.reply(307, headers=[("Location", "http://localhost:%d/cdn/%s" % (port, ref))])
        if state["429"] == 0:
            state["429"] = 1
            return self.reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                              headers=[("Retry-After", "1")])
        if ref == "weird":
            return self.reply(200, b"{}", "application/vnd.example.thing+json")
        for m in index()["manifests"]:
            if m["digest"] == ref or m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref:
                with open(os.path.join(layout, "blobs", "sha256", m["digest"][7:]), "rb") as f:
                    return self.reply(200, f.read(), m["mediaType"], [("Docker-Content-Digest", m["digest"])])
        return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
