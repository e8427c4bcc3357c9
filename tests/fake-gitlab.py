#!/usr/bin/env python3
"""A fake GitLab for kiln's tests: the runner API over real HTTPS, plus git
smart HTTP for the jobs' repositories. Python standard library only.

    fake-gitlab.py --dir DIR [--port N] [--long-poll S] [--san SAN] [--client-ca PEM] [--public REPO]

DIR gets a fresh CA and server certificate (made with `openssl`): DIR/ca.pem
is the file to pass as tls_ca_file; --san sets the server certificate's
subjectAltName ("IP:127.0.0.1": named by its address only), --client-ca
makes the server require a client certificate that CA issued. When the server listens, DIR/port holds
its port and DIR/url its base URL. Repositories are served from DIR/repos
(GIT_PROJECT_ROOT of `git http-backend`); a job's repo_url carries
`gitlab-ci-token:<job token>@`, and any other credentials get 401.

Runner API (see shared/ref/gitlab-runner-protocol.md):
  POST   /api/v4/runners/verify         200 {id, token} | 403
  POST   /api/v4/runners                legacy registration: 201 | 403
  POST   /api/v4/runners/reset_authentication_token   201 {token, token_expires_at} (the old
                                        token stops working) | 403
  DELETE /api/v4/runners                204 | 403
  DELETE /api/v4/runners/managers       204 | 404 | 403
  POST   /api/v4/jobs/request           201 payload | 204 (after the long poll) | 403
  POST   /api/v4/jobs/:id/artifacts     multipart "file": 201 | 403 (per "artifacts" faults)
  GET    /api/v4/jobs/:id/artifacts     the zip (rewritten by Python's zipfile) | 302 to
                                        /__objects/:id ("artifacts_redirect") | 404
  PUT    /api/v4/jobs/:id               200 | 202 | 412 | 403 (per the job's script)
  PATCH  /api/v4/jobs/:id/trace         202 + Range | 416 + Range | 403

Control (the tests' side, same server, no authentication):
  POST /__runner   {"token": T}                      accept another runner token
  POST /__job      {"payload": {...}, "script": {...}, "runner": T?}
                   queue a job; missing id, token and git_info.repo_url are
                   filled in ("repo": "group/project" picks the repository)
  POST /__faults   {"request": [...], "verify": [...], "git": [...], ...}  endpoint-wide
                   faults ("git": each request of git smart HTTP)
  POST /__cancel   {"id": N, "status": "canceling" | "canceled"}
  POST /__public   {"repo": "group/project"}   anyone may clone it from now on
  POST /__config   {"long_poll": S, "token_lifetime": S}   change --long-poll, the
                   lifetime of renewed runner tokens (0: they never expire)
  GET  /__state    everything received, as JSON ("arrived": each API and git
                   request when it came in, before any fault's delay)
  GET  /__trace/N  the job's stored trace, raw bytes
  POST /__shutdown

A fault, in a list consumed one per request: an HTTP status (500), or an
object {"status": S (200: answer as usual), "delay": seconds, "drop": true (close the connection
without a reply), "headers": {...}, "discard": true (PATCH: reply 202 as if
stored but drop the data, so the next PATCH gets a real 416)}.
Per-job script keys: "ack" (faults for PUT state=running), "patch" (faults
for PATCH), "final" (faults for the final PUT: [202, 412, 200], ...; a 412 drops the
stored trace, as GitLab does when the checksum does not match),
"interval" (X-GitLab-Trace-Update-Interval, default 1), "cancel_on" (a
string: once the stored trace contains it the job's status becomes
"cancel_status", default canceling), "patch_fail_after" ({"mark": S,
"seconds": N, "status": 502}: once the stored trace contains S, every
PATCH for N seconds gets that status: a burst of errors at the job's end),
"pad_payload" (N: a variable of N bytes makes the payload that large).
"""

import argparse
import base64
import binascii
import http.server
import io
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
import zlib

LOCK = threading.Condition()
STATE = {
    "runners": {},          # token -> {"id", "system_ids": [], "deleted": bool}
    "registration_token": "kiln-registration-token",
    "queue": [],            # [{"job_id", "runner"}]
    "jobs": {},             # str(id) -> job record
    "requests": [],         # every API request: {"method", "path", "query", "status", "t"}
    "arrived": [],          # every API and git request as it came in: {"method", "path"}
    "job_requests": [],     # bodies of POST /jobs/request (token redacted)
    "verify": [],           # bodies of POST /runners/verify
    "registrations": [],
    "unregistrations": [],
    "faults": {},           # endpoint -> [fault...]
    "public_repos": [],     # repositories anyone may clone
    "long_poll": 0.0,       # seconds a job request waits for a job
    "token_resets": [],     # POST /runners/reset_authentication_token: {"ok", "old", "new"}
    "token_lifetime": 0,    # seconds a renewed token lives (0: never expires)
    "inflight": {},         # runner token -> job requests being answered
    "max_inflight": {},     # runner token -> the most at once
    "last_update": 1,
    "next_id": 1000,
}
TRACES = {}                 # str(id) -> bytearray
ARTIFACTS = {}              # str(id) -> the zip uploaded for the job
ARGS = None
BASE_URL = ""


def log(*a):
    print("fake-gitlab:", *a, file=sys.stderr, flush=True)


def take_fault(lst):
    """Pop the next fault of a list (under LOCK); None when there is none."""
    if lst:
        f = lst.pop(0)
        return f if isinstance(f, dict) else {"status": f}
    return None


def crc32_hex(data):
    return "crc32:%08x" % (binascii.crc32(bytes(data)) & 0xffffffff)


def new_job(req):
    p = req.get("payload") or {}
    script = req.get("script") or {}
    with LOCK:
        jid = p.get("id") or STATE["next_id"]
        STATE["next_id"] = max(STATE["next_id"], jid) + 1
    tok = p.get("token") or "glcbt-" + secrets.token_hex(10)
    # id and token first, as GitLab's presenter writes them.
    p = dict({"id": jid, "token": tok}, **{k: v for k, v in p.items() if k not in ("id", "token")})
    ji = p.setdefault("job_info", {})
    ji.setdefault("id", jid)
    gi = p.setdefault("git_info", {})
    repo = req.get("repo", "group/project")
    gi.setdefault("repo_url", "%s://gitlab-ci-token:%s@%s/%s.git" %
                  ("https", p["token"], BASE_URL.split("://", 1)[1], repo))
    job = {
        "id": jid, "payload": p, "token": p["token"], "script": script,
        "status": "queued", "runner": req.get("runner"),
        "patches": [], "updates": [], "acks": 0, "final": None,
        "job_status_override": None,
    }
    with LOCK:
        STATE["jobs"][str(jid)] = job
        TRACES[str(jid)] = bytearray()
        STATE["queue"].append({"job_id": jid, "runner": req.get("runner")})
        STATE["last_update"] += 1
        LOCK.notify_all()
    return jid


def job_status(job):
    return job["job_status_override"] or job["status"]


def gzip_members(data):
    """[[name, text], ...] of concatenated gzip members, or [["<bad>", why]]."""
    out = []
    while data:
        if len(data) < 10 or data[:3] != b"\x1f\x8b\x08":
            return out + [["<bad>", "not a gzip member at byte %d" % len(data)]]
        flags, pos, name = data[3], 10, ""
        if flags & 4:  # FEXTRA
            pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
        if flags & 8:  # FNAME
            end = data.index(b"\0", pos)
            name, pos = data[pos:end].decode("utf-8", "replace"), end + 1
        if flags & 16:  # FCOMMENT
            pos = data.index(b"\0", pos) + 1
        if flags & 2:  # FHCRC
            pos += 2
        d = zlib.decompressobj(-15)
        text = d.decompress(data[pos:])
        if not d.eof:
            return out + [["<bad>", "a truncated member"]]
        rest = d.unused_data
        if len(rest) < 8 or int.from_bytes(rest[:4], "little") != zlib.crc32(text):
            return out + [["<bad>", "a bad CRC"]]
        out.append([name, text.decode("utf-8", "replace")])
        data = rest[8:]
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gitlab/1"

    def log_message(self, fmt, *a):
        if os.environ.get("FAKE_GITLAB_VERBOSE"):
            log(self.command, self.path, fmt % a)

    # --- plumbing -----------------------------------------------------
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self, raw):
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def reply(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        if self.path.startswith("/api/"):
            with LOCK:
                STATE["requests"].append({"method": self.command, "path": self.path.split("?")[0],
                                          "query": urllib.parse.urlsplit(self.path).query,
                                          "status": status, "t": time.time()})

    def drop(self):
        with LOCK:
            STATE["requests"].append({"method": self.command, "path": self.path.split("?")[0],
                                      "status": "dropped", "t": time.time()})
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def apply_fault(self, f):
        """Delay and maybe answer per fault f; True when the request is answered."""
        if not f:
            return False
        if f.get("delay"):
            time.sleep(float(f["delay"]))
        if f.get("drop"):
            self.drop()
            return True
        if f.get("status") and f["status"] != 200 and not f.get("discard"):
            self.reply(int(f["status"]), f.get("body", {"message": "fault injected"}),
                       headers=f.get("headers"))
            return True
        return False

    def endpoint_fault(self, name):
        with LOCK:
            return take_fault(STATE["faults"].get(name))

    def runner_ok(self, token):
        with LOCK:
            r = STATE["runners"].get(token or "")
            return r is not None and not r["deleted"]

    # --- verbs --------------------------------------------------------
    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith("/__"):
            with LOCK:
                STATE["arrived"].append({"method": method, "path": path})
        raw = self.body()
        try:
            if path.startswith("/__"):
                return self.control(method, path, raw)
            if path.startswith("/api/v4/"):
                return self.api(method, path[len("/api/v4"):], raw)
            if ".git/" in path:
                return self.git(method, raw)
            self.reply(404, {"message": "404 Not Found"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- control ------------------------------------------------------
    def control(self, method, path, raw):
        req = self.json_body(raw) or {}
        if path == "/__state" and method == "GET":
            with LOCK:
                out = json.loads(json.dumps(STATE))
                for jid, job in out["jobs"].items():
                    t = TRACES[jid]
                    job["trace_len"] = len(t)
                    job["trace_crc"] = crc32_hex(t)
                    job["trace"] = t.decode("utf-8", "replace")
            return self.reply(200, out)
        if path.startswith("/__trace/") and method == "GET":
            with LOCK:
                t = bytes(TRACES.get(path[len("/__trace/"):], b""))
            return self.reply(200, t, "application/octet-stream")
        if path == "/__runner" and method == "POST":
            with LOCK:
                STATE["runners"][req["token"]] = {"id": len(STATE["runners"]) + 1,
                                                   "system_ids": [], "deleted": False}
            return self.reply(200, {})
        if path == "/__job" and method == "POST":
            return self.reply(200, {"id": new_job(req)})
        if path == "/__faults" and method == "POST":
            with LOCK:
                for k, v in req.items():
                    STATE["faults"][k] = list(v)
            return self.reply(200, {})
        if path.startswith("/__objects/") and method == "GET":
            # Object storage behind a redirect: it must not see the job token.
            jid = path[len("/__objects/"):]
            with LOCK:
                STATE["jobs"][jid].setdefault("object_gets", []).append(
                    {"job_token_sent": "JOB-TOKEN" in self.headers})
                data = ARTIFACTS.get(jid)
            return self.reply(200 if data else 404, repack(data) if data else b"", "application/zip")
        if path == "/__config" and method == "POST":
            with LOCK:
                if "long_poll" in req:
                    STATE["long_poll"] = float(req["long_poll"])
                if "token_lifetime" in req:
                    STATE["token_lifetime"] = int(req["token_lifetime"])
            return self.reply(200, {})
        if path == "/__public" and method == "POST":
            with LOCK:
                STATE["public_repos"].append(req["repo"])
            return self.reply(200, {})
        if path == "/__cancel" and method == "POST":
            with LOCK:
                STATE["jobs"][str(req["id"])]["job_status_override"] = req.get("status", "canceling")
            return self.reply(200, {})
        if path == "/__shutdown":
            self.reply(200, {})
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return None
        return self.reply(404, {"message": "no such control endpoint"})

    # --- runner API ---------------------------------------------------
    def api(self, method, path, raw):
        multipart = self.headers.get("Content-Type", "").startswith("multipart/")
        body = {} if multipart else self.json_body(raw)
        if body is None and method in ("POST", "PUT", "DELETE") and raw:
            return self.reply(400, {"message": "400 Bad request - invalid JSON"})
        body = body or {}
        if method == "POST" and path == "/runners/verify":
            if self.apply_fault(self.endpoint_fault("verify")):
                return None
            with LOCK:
                STATE["verify"].append({"system_id": body.get("system_id"), "info": body.get("info"),
                                        "token_ok": body.get("token") in STATE["runners"]})
            if not self.runner_ok(body.get("token")):
                return self.reply(403, {"message": "403 Forbidden"})
            with LOCK:
                r = STATE["runners"][body["token"]]
                if body.get("system_id") and body["system_id"] not in r["system_ids"]:
                    r["system_ids"].append(body["system_id"])
            return self.reply(200, {"id": r["id"], "token": body["token"], "token_expires_at": None})
        if method == "POST" and path == "/runners/reset_authentication_token":
            with LOCK:
                r = STATE["runners"].get(body.get("token") or "")
                if not r or r["deleted"]:
                    STATE["token_resets"].append({"ok": False})
                    new = None
                else:
                    new = "glrt-renewed-" + secrets.token_hex(8)
                    STATE["runners"][new] = dict(r, system_ids=list(r["system_ids"]))
                    r["deleted"] = True  # GitLab retires the old token at once
                    STATE["token_resets"].append({"ok": True, "old": body["token"], "new": new})
                life = STATE["token_lifetime"]
            if not new:
                return self.reply(403, {"message": "403 Forbidden"})
            exp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + life)) if life else None
            return self.reply(201, {"token": new, "token_expires_at": exp})
        if method == "POST" and path == "/runners":
            with LOCK:
                STATE["registrations"].append({k: v for k, v in body.items() if k != "token"})
                if body.get("token") != STATE["registration_token"]:
                    ok = None
                else:
                    ok = "kiln-legacy-" + secrets.token_hex(8)
                    STATE["runners"][ok] = {"id": len(STATE["runners"]) + 1, "system_ids": [],
                                            "deleted": False}
            if not ok:
                return self.reply(403, {"message": "403 Forbidden"})
            return self.reply(201, {"id": STATE["runners"][ok]["id"], "token": ok, "token_expires_at": None})
        if method == "DELETE" and path in ("/runners", "/runners/managers"):
            with LOCK:
                STATE["unregistrations"].append({"path": path, "system_id": body.get("system_id"),
                                                 "token": body.get("token")})
                r = STATE["runners"].get(body.get("token") or "")
                if not r or r["deleted"]:
                    status = 403
                elif path == "/runners":
                    r["deleted"] = True
                    status = 204
                elif body.get("system_id") in r["system_ids"]:
                    r["system_ids"].remove(body["system_id"])
                    status = 204
                else:
                    status = 404
            return self.reply(status)
        if method == "POST" and path == "/jobs/request":
            return self.job_request(body)
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "jobs" and parts[1].isdigit():
            with LOCK:
                job = STATE["jobs"].get(parts[1])
            if not job:
                return self.reply(404, {"message": "404 Not Found"})
            if method == "PUT" and len(parts) == 2:
                return self.job_update(job, body)
            if method == "PATCH" and len(parts) == 3 and parts[2] == "trace":
                return self.job_trace(job, raw)
            if method == "POST" and len(parts) == 3 and parts[2] == "artifacts":
                return self.artifacts_upload(job, raw)
            if method == "GET" and len(parts) == 3 and parts[2] == "artifacts":
                return self.artifacts_download(job)
        return self.reply(404, {"message": "404 Not Found"})

    def job_request(self, body):
        if self.apply_fault(self.endpoint_fault("request")):
            return None
        token = body.get("token")
        rec = {k: v for k, v in body.items() if k != "token"}
        rec["token_ok"] = self.runner_ok(token)
        rec["user_agent"] = self.headers.get("User-Agent")
        rec["request_id"] = self.headers.get("X-Request-Id")
        with LOCK:
            STATE["job_requests"].append(rec)
        if not rec["token_ok"]:
            return self.reply(403, {"message": "403 Forbidden"})
        with LOCK:
            deadline = time.time() + STATE["long_poll"]
            n = STATE["inflight"].get(token, 0) + 1
            STATE["inflight"][token] = n
            STATE["max_inflight"][token] = max(n, STATE["max_inflight"].get(token, 0))
            while True:
                for i, q in enumerate(STATE["queue"]):
                    if q["runner"] in (None, token):
                        job = STATE["jobs"][str(STATE["queue"].pop(i)["job_id"])]
                        job["status"] = "pending"
                        p = job["payload"]
                        if job["script"].get("pad_payload"):  # not kept in the state: it is large
                            p = dict(p, variables=p.get("variables", []) + [
                                {"key": "PAD", "value": "x" * int(job["script"]["pad_payload"]), "public": True}])
                        payload = json.dumps(p)
                        break
                else:
                    job = None
                if job or time.time() >= deadline:
                    break
                LOCK.wait(max(0.05, deadline - time.time()))
            lu = str(STATE["last_update"])
            STATE["inflight"][token] -= 1
        if job:
            return self.reply(201, payload, headers={"X-GitLab-Last-Update": lu})
        return self.reply(204, headers={"X-GitLab-Last-Update": lu, "Gitlab-Ci-Builds-Polling": "yes"})

    def job_headers(self, job):
        return {"Job-Status": job_status(job),
                "X-GitLab-Trace-Update-Interval": job["script"].get("interval", 1)}

    def job_update(self, job, body):
        if (self.headers.get("JOB-TOKEN") != job["token"] or body.get("token") != job["token"]):
            return self.reply(403, {"message": "403 Forbidden"})
        state = body.get("state")
        rec = {k: v for k, v in body.items() if k != "token"}
        with LOCK:
            job["updates"].append(rec)
        if state in ("running", "pending"):
            with LOCK:
                f = take_fault(job["script"].setdefault("ack", []))
            if self.apply_fault(f):
                return None
            with LOCK:
                if job["status"] in ("success", "failed", "canceled"):
                    return self.reply(403, {"message": "403 Forbidden - Job is not running"},
                                      headers=self.job_headers(job))
                job["acks"] += 1
                if job["status"] in ("pending", "queued"):
                    job["status"] = "running"
            return self.reply(200, {}, headers=self.job_headers(job))
        if state not in ("success", "failed"):
            return self.reply(400, {"message": "400 Bad request - state does not have a valid value"})
        with LOCK:
            f = take_fault(job["script"].setdefault("final", []))
        if f and f.get("status") in (202, 412) and not f.get("drop"):
            if f.get("delay"):
                time.sleep(float(f["delay"]))
            if f["status"] == 412:
                # The checksum did not match: GitLab drops the trace (trace_reset).
                with LOCK:
                    job["trace_resets"] = job.get("trace_resets", 0) + 1
                    TRACES[str(job["id"])] = bytearray()
            h = self.job_headers(job)
            h["X-GitLab-Trace-Update-Interval"] = f.get("interval", 1)
            return self.reply(int(f["status"]), {}, headers=h)
        if self.apply_fault(f):
            return None
        with LOCK:
            if job["status"] in ("success", "failed", "canceled") and job["final"]:
                return self.reply(403, {"message": "403 Forbidden - Job is not running"},
                                  headers=self.job_headers(job))
            t = TRACES[str(job["id"])]
            out = body.get("output") or {}
            job["final"] = rec
            job["final"]["checksum_ok"] = out.get("checksum") == crc32_hex(t)
            job["final"]["bytesize_ok"] = out.get("bytesize") == len(t)
            job["status"] = "canceled" if job_status(job) in ("canceling", "canceled") else state
            job["job_status_override"] = None
        return self.reply(200, {}, headers=self.job_headers(job))

    def job_trace(self, job, raw):
        if self.headers.get("JOB-TOKEN") != job["token"]:
            return self.reply(403, {"message": "403 Forbidden"})
        cr = self.headers.get("Content-Range")
        if not cr:
            return self.reply(400, {"message": "400 Bad request - Content-Range missing"})
        try:
            start, end = (int(x) for x in cr.split("-"))
        except ValueError:
            return self.reply(400, {"message": "400 Bad request - bad Content-Range"})
        fa = job["script"].get("patch_fail_after")
        with LOCK:
            if fa and not job.get("fail_until") and fa["mark"].encode() in TRACES[str(job["id"])]:
                job["fail_until"] = time.time() + float(fa["seconds"])
            failing = fa and job.get("fail_until") and time.time() < job["fail_until"]
            f = {"status": int(fa.get("status", 502))} if failing else \
                take_fault(job["script"].setdefault("patch", []))
        rec = {"start": start, "end": end, "len": len(raw), "status": None, "t": time.time()}
        with LOCK:
            job["patches"].append(rec)
        if self.apply_fault(f):
            rec["status"] = f.get("status", "dropped") if not f.get("drop") else "dropped"
            return None
        jid = str(job["id"])
        with LOCK:
            if job["status"] in ("success", "failed", "canceled"):
                rec["status"] = 403
                return self.reply(403, {"message": "403 Forbidden - Job is not running"},
                                  headers=self.job_headers(job))
            t = TRACES[jid]
            if start != len(t) or end != start + len(raw) - 1:
                rec["status"] = 416
                return self.reply(416, {"message": "416 Range Not Satisfiable"},
                                  headers=dict(self.job_headers(job), Range="0-%d" % len(t)))
            if f and f.get("discard"):
                size = len(t) + len(raw)
            else:
                t += raw
                size = len(t)
            on = job["script"].get("cancel_on")
            if on and on.encode() in t and not job.get("cancel_fired"):
                job["cancel_fired"] = True
                job["job_status_override"] = job["script"].get("cancel_status", "canceling")
            rec["status"] = 202
            h = dict(self.job_headers(job), Range="0-%d" % size)
        return self.reply(202, b"", headers=h)

    # --- artifacts ----------------------------------------------------
    def artifacts_upload(self, job, raw):
        with LOCK:
            f = take_fault(job["script"].setdefault("artifacts", []))
        if self.apply_fault(f):
            return None
        if self.headers.get("JOB-TOKEN") != job["token"] or job["status"] != "running":
            return self.reply(403, {"message": "403 Forbidden"})
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            return self.reply(400, {"message": "400 Bad request - not multipart"})
        boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
        part = None
        for chunk in raw.split(b"--" + boundary):
            head, sep, body = chunk.partition(b"\r\n\r\n")
            if sep and b'name="file"' in head:
                fname = head.split(b'filename="', 1)[1].split(b'"', 1)[0].decode() if b"filename=" in head else None
                part = (fname, body[:-2] if body.endswith(b"\r\n") else body)
        if not part:
            return self.reply(400, {"message": "400 Bad request - file is missing"})
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        atype, fmt = query.get("artifact_type", "archive"), query.get("artifact_format", "zip")
        # GitLab: each type has its format (archive: zip; reports: gzip or raw).
        if (atype == "archive") != (fmt == "zip") or fmt not in ("zip", "gzip", "raw"):
            return self.reply(400, {"message": "400 Bad request - %s artifacts cannot be %s" % (atype, fmt)})
        rec = {"filename": part[0], "query": query, "size": len(part[1])}
        if fmt == "zip":
            try:
                z = zipfile.ZipFile(io.BytesIO(part[1]))
                rec["names"], rec["zip_ok"] = sorted(z.namelist()), z.testzip() is None
            except zipfile.BadZipFile:
                rec["names"], rec["zip_ok"] = [], False
        elif fmt == "gzip":
            rec["members"] = gzip_members(part[1])
        else:
            rec["content"] = part[1].decode("utf-8", "replace")
        with LOCK:
            if atype == "archive":
                ARTIFACTS[str(job["id"])] = part[1]
            job.setdefault("artifacts", []).append(rec)
        return self.reply(201, {})

    def artifacts_download(self, job):
        with LOCK:
            tokens = {j["token"] for j in STATE["jobs"].values()}
            data = ARTIFACTS.get(str(job["id"]))
            job.setdefault("downloads", []).append({"token_ok": self.headers.get("JOB-TOKEN") in tokens})
        if self.headers.get("JOB-TOKEN") not in tokens:
            return self.reply(403, {"message": "403 Forbidden"})
        if data is None:
            return self.reply(404, {"message": "404 Not Found"})
        if job["script"].get("artifacts_redirect"):
            return self.reply(302, b"", "text/html", {"Location": "%s/__objects/%d?sig=x" % (BASE_URL, job["id"])})
        return self.reply(200, repack(data), "application/zip")

    # --- git smart HTTP through git http-backend ----------------------
    def git(self, method, raw):
        if self.apply_fault(self.endpoint_fault("git")):
            return None
        auth = self.headers.get("Authorization", "")
        user = pw = None
        if auth.startswith("Basic "):
            try:
                user, pw = base64.b64decode(auth[6:]).decode().split(":", 1)
            except (ValueError, UnicodeDecodeError):
                pass
        with LOCK:
            tokens = {j["token"] for j in STATE["jobs"].values()
                      if j["status"] in ("pending", "running")}
        repo = urllib.parse.urlsplit(self.path).path.strip("/").split(".git/")[0]
        public = auth == "" and repo in STATE["public_repos"]
        if not public and (user != "gitlab-ci-token" or pw not in tokens):
            return self.reply(401, "HTTP Basic: Access denied\n", "text/plain",
                              {"WWW-Authenticate": 'Basic realm="GitLab"'})
        u = urllib.parse.urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": os.path.join(ARGS.dir, "repos"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method,
            "PATH_INFO": urllib.parse.unquote(u.path),
            "QUERY_STRING": u.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(raw)),
            "REMOTE_USER": user or "",
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for h in ("Git-Protocol", "Content-Encoding"):
            if self.headers.get(h):
                env["HTTP_" + h.upper().replace("-", "_")] = self.headers[h]
        p = subprocess.run(["git", "http-backend"], input=raw, env=env, capture_output=True, timeout=120)
        head, _, out = p.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, out = p.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers[k.strip()] = v.strip()
        ctype = headers.pop("Content-Type", "application/octet-stream")
        if p.returncode != 0 and not p.stdout:
            log("git http-backend failed:", p.stderr.decode(errors="replace"))
            return self.reply(500, p.stderr, "text/plain")
        return self.reply(status, out, ctype, headers)


def repack(data):
    """The zip as another writer makes it (Python's zipfile, deflate)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), zipfile.ZIP_DEFLATED)
    return out.getvalue()


# DNS:127.0.0.1 as well: mbedTLS 2 (libgit2's own TLS) matches no IP SANs.
DEFAULT_SAN = "IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost"


def make_certs(d, san):
    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=kiln fake GitLab CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    # The CN is no name when SANs are there (RFC 6125): --san alone names the server.
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj",
        "/CN=127.0.0.1" if san == DEFAULT_SAN else "/CN=kiln fake GitLab")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=%s\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n" % san)
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


def main():
    global ARGS, BASE_URL
    ap = argparse.ArgumentParser(description="fake GitLab for kiln's tests")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--long-poll", type=float, default=0.0, help="seconds a job request waits for a job")
    ap.add_argument("--runner-token", action="append", default=[], help="accept this runner token")
    ap.add_argument("--san", default=DEFAULT_SAN, help="the server certificate's subjectAltName")
    ap.add_argument("--client-ca", help="require a client certificate issued by this CA (PEM)")
    ap.add_argument("--public", action="append", default=[], help="a repository anyone may clone")
    ARGS = ap.parse_args()
    STATE["long_poll"] = ARGS.long_poll
    os.makedirs(os.path.join(ARGS.dir, "repos"), exist_ok=True)
    make_certs(ARGS.dir, ARGS.san)
    STATE["public_repos"].extend(ARGS.public)
    for t in ARGS.runner_token:
        STATE["runners"][t] = {"id": len(STATE["runners"]) + 1, "system_ids": [], "deleted": False}
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(ARGS.dir, "server.pem"), os.path.join(ARGS.dir, "server.key"))
    if ARGS.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ARGS.client_ca)
    # The handshake happens in the request's thread, not in accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    port = srv.server_address[1]
    BASE_URL = "https://127.0.0.1:%d" % port
    for name, text in (("url", BASE_URL), ("port", str(port))):
        with open(os.path.join(ARGS.dir, name + ".tmp"), "w") as f:
            f.write(text + "\n")
        os.rename(os.path.join(ARGS.dir, name + ".tmp"), os.path.join(ARGS.dir, name))
    log("listening on", BASE_URL)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    srv.server_close()


if __name__ == "__main__":
    main()
