#!/usr/bin/env python3
"""A fake GitHub REST API for kiln's tests (github/), over real HTTPS.
Python standard library and the `openssl` command only.

    fake-github.py --dir DIR [--port N]

DIR gets a fresh CA and server certificate (DIR/ca.pem is the CA file to
trust) and a GitHub App key (DIR/app.pem, its public half DIR/app.pub,
App id 4242). When the server listens, DIR/url holds its base URL (the
api_url; DIR/port its port).

Every API request must carry Accept: application/vnd.github+json,
X-GitHub-Api-Version: 2022-11-28 and a User-Agent (else 400), and
Authorization: Bearer with the PAT "ghp_fake", a live installation token,
or (for /app/... and .../installation) an App JWT checked with
`openssl dgst -verify` against app.pub (exp - iat <= 600, iss 4242, not
expired). Replies carry ETags (a matching If-None-Match gets a 304 that
costs no budget) and x-ratelimit-* from a live budget; lists paginate
(per_page, page, Link rel="next"/"last").

API: GET /repos/O/R/installation, /orgs/O/installation (installation 77
for owner "acme"); POST /app/installations/77/access_tokens; GET
/installation/repositories, /orgs/O/repos; GET /repos/O/R/actions/runs
?status=, .../runs/ID/jobs, .../actions/jobs/ID; under /repos/O/R or
/orgs/O: POST actions/runners/generate-jitconfig (422 without
runner_group_id or with 0 or >100 labels, 404 for an unknown group, 409
for a taken name, else 201 with a base64 JSON blob), GET actions/runners
(?name=), DELETE actions/runners/ID (204, 404, 422 when busy).

Control (no authentication, not counted):
  POST /__seed    (clears faults, requests and config first) {"runs": {"O/R": [{"id": N, "status": S, "jobs": [{"id", "status", "labels"}]}]},
                   "repos": ["O/R", ...], "runners": {"O/R" | "O": [{"id", "name", "busy"}]},
                   "groups": [1, ...]}   replaces those parts of the state
  POST /__faults  {"METHOD /path/prefix": [fault, ...]}  consumed one per matching request;
                  a fault is a status or {"status", "headers", "body", "jit_blob", "conflict", "claim"}
                  ("conflict": register a runner under the requested name, then answer 409;
                  "claim": N: runner N takes the first queued job, then the request is answered
                  as usual; {}: answered as usual). A run's status follows its jobs.
  POST /__config  {"token_lifetime": S, "budget": N, "reset_in": S (the budget refills then),
                   "stub_result": R, "stub_sleep": S, "lost_after": S}
  GET  /__state   what arrived (method, path, status, t), tokens issued, expired tokens used,
                  runners, claims; monotonic times: queued_t, seen_t (a jobs list first showed the
                  job queued), jit_t (a runner's JIT config made), started_t (a stub run.sh began)
  From tests/github-stub-runner/run.sh in a runner VM, as GitHub's broker and the runner's
  heartbeats would be (times are monotonic s):
  POST /__started {"runner_name": N, "elapsed_us": U}: run.sh began U us before this call (the
                  runner goes online)
  POST /__claim   {"runner_name": N, "wait": S}: long poll: the first queued job goes in progress
                  on that runner (busy), answers {"job": ID, "result": stub_result, "sleep":
                  stub_sleep}; {"none": true} after S s; {"gone": true} once the runner is deleted
  POST /__heartbeat {"runner_name": N}: the job goes on; lost_after s without one: the runner
                  goes offline and not busy, its job completes with conclusion failure
  POST /__complete {"runner_name": N}: its job completes with the claimed result; the
                  (ephemeral) runner unregisters
  Test side: POST /__queue {"repo", "run", "job": {"id", "labels"}} adds a queued job (queued_t);
  POST /__cancel {"job": ID} completes it as cancelled

--bind ADDR listens on ADDR (the certificate names it too); the JIT blob's
.runner holds serverUrl, this server's base URL, and the sha256 of each
blob handed out is kept in /__state's jit_sha256 (by runner name).
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

APP_ID = 4242
INSTALLATION = 77
OWNER = "acme"
PAT = "ghp_fake"
LOCK = threading.Lock()
WAKE = threading.Condition(LOCK)  # a job queued, a runner deleted: long-polling claims look again
STATE = {
    "runs": {},          # "O/R" -> [run]
    "repos": ["acme/widgets"],
    "runners": {},       # scope -> {id: runner}
    "groups": [1],
    "faults": {},
    "tokens": {},        # token -> expiry (epoch s)
    "token_lifetime": 3600,
    "tokens_issued": 0,
    "budget": 5000,
    "reset_in": 3600,
    "reset_at": 0,       # monotonic s when the budget refills (0: reset_in from now)
    "remaining": 5000,
    "requests": [],
    "next_runner": 1000,
    "stub_result": "success",
    "stub_sleep": 0,     # s a claimed job runs (heartbeats), then completes
    "lost_after": 3,     # s without a heartbeat: the runner is offline, its job failed
    "expired_used": 0,   # requests that came with an installation token past its expiry
    "queued_t": {},      # job id -> monotonic s it was queued (/__queue)
    "seen_t": {},        # job id -> monotonic s a jobs list first showed it queued
    "started_t": {},     # runner name -> monotonic s its run.sh started (what it said, less the time it took)
    "jit_t": {},         # runner name -> monotonic s its JIT config was handed out
    "beats": {},         # runner name -> monotonic s of its last heartbeat
    "jit_sha256": {},    # runner name -> sha256 of its blob
    "claims": [],
}
ARGS = None
BASE = ""


def log(*a):
    print("fake-github:", *a, file=sys.stderr, flush=True)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_jwt(tok):
    """The claims of a valid App JWT, else None."""
    try:
        h, c, s = tok.split(".")
        hdr = json.loads(b64url_decode(h))
        claims = json.loads(b64url_decode(c))
        sig = b64url_decode(s)
    except Exception:
        return None
    if hdr.get("alg") != "RS256":
        return None
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "in"), "wb") as f:
            f.write((h + "." + c).encode())
        with open(os.path.join(d, "sig"), "wb") as f:
            f.write(sig)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", os.path.join(ARGS.dir, "app.pub"),
                            "-signature", os.path.join(d, "sig"), os.path.join(d, "in")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    now = time.time()
    iat, exp = claims.get("iat", 0), claims.get("exp", 0)
    if str(claims.get("iss")) != str(APP_ID) or exp - iat > 600 or exp < now or iat > now + 60:
        return None
    return claims


def reset_left():
    """Seconds until the budget refills; a passed reset refills it."""
    now = time.monotonic()
    if not STATE["reset_at"]:
        STATE["reset_at"] = now + STATE["reset_in"]
    if now >= STATE["reset_at"]:
        STATE["remaining"] = STATE["budget"] if STATE["budget"] > 0 else 5000
        STATE["reset_at"] = now + 3600
    return STATE["reset_at"] - now


def find_runner(name):
    for rs in STATE["runners"].values():
        for r in rs.values():
            if r["name"] == name:
                return r
    return None


def all_jobs():
    return [j for rs in STATE["runs"].values() for run in rs for j in run.get("jobs", [])]


def settle_runs():
    """A run's status follows its jobs, as on GitHub: in progress once one
    job has been taken, completed when all are."""
    for rs in STATE["runs"].values():
        for run in rs:
            jobs = run.get("jobs", [])
            if run.get("status") not in ("queued", "in_progress") or not jobs:
                continue
            if all(j.get("status") == "completed" for j in jobs):
                run["status"] = "completed"
            elif any(j.get("status") != "queued" for j in jobs):
                run["status"] = "in_progress"


def claim(runner, name):
    """The first queued job goes in progress on the runner NAME (busy)."""
    job = next((j for j in all_jobs() if j.get("status") == "queued"), None)
    if job is None:
        return None
    job.update(status="in_progress", runner_id=runner["id"], runner_name=name)
    runner.update(busy=True, status="online")
    STATE["beats"][name] = time.monotonic()
    STATE["claims"].append({"runner_name": name, "job": job["id"], "result": STATE["stub_result"],
                            "t": time.monotonic()})
    settle_runs()
    return job


def lose_silent_runners():
    """A busy runner whose heartbeats stopped (its VM died) goes offline and
    its job fails, as GitHub does after it loses a runner."""
    now = time.monotonic()
    for name, t in list(STATE["beats"].items()):
        if now - t <= STATE["lost_after"]:
            continue
        del STATE["beats"][name]
        r = find_runner(name)
        if r:
            r.update(busy=False, status="offline")
        for j in all_jobs():
            if j.get("runner_name") == name and j.get("status") == "in_progress":
                j.update(status="completed", conclusion="failure")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, body=None, headers=None, etag=True):
        data = b"" if body is None else json.dumps(body).encode()
        h = {"Content-Type": "application/json", "X-GitHub-Request-Id": "FAKE:%04X" % len(STATE["requests"])}
        h.update({"x-ratelimit-limit": str(STATE["budget"]), "x-ratelimit-remaining": str(STATE["remaining"]),
                  "x-ratelimit-reset": str(int(time.time() + reset_left()) + 1), "x-ratelimit-resource": "core"})
        if etag and self.command == "GET" and status == 200:
            tag = '"%s"' % hashlib.sha256(data + (headers or {}).get("Link", "").encode()).hexdigest()[:32]
            h["ETag"] = tag
            if self.headers.get("If-None-Match") == tag:
                status, data = 304, b""
        if headers:
            h.update(headers)
        if status != 304 and not self.path.startswith("/__") and STATE["remaining"] > 0 and status < 400:
            STATE["remaining"] -= 1
        h["Content-Length"] = str(len(data))
        self.send_response(status)
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)
        if not self.path.startswith("/__"):
            STATE["requests"].append({"method": self.command, "path": self.path, "status": status,
                                      "t": time.monotonic()})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def do_DELETE(self):
        self.route()

    def route(self):
        with LOCK:
            try:
                self.route_locked()
            except Exception as exc:  # a bug here: say so loudly
                log("error", repr(exc))
                self.reply(599, {"message": "fake error: %r" % exc})

    def paginate(self, items, key, q):
        per = int(q.get("per_page", ["30"])[0])
        page = int(q.get("page", ["1"])[0])
        last = max(1, (len(items) + per - 1) // per)
        chunk = items[(page - 1) * per:page * per]
        links = []
        path = urllib.parse.urlsplit(self.path).path

        def url(p):
            qq = {k: v[0] for k, v in q.items()}
            qq["page"] = str(p)
            return "%s%s?%s" % (BASE, path, urllib.parse.urlencode(qq))
        if page < last:
            links.append('<%s>; rel="next"' % url(page + 1))
            links.append('<%s>; rel="last"' % url(last))
        hdr = {"Link": ", ".join(links)} if links else None
        body = chunk if key is None else {"total_count": len(items), key: chunk}
        self.reply(200, body, hdr)

    def route_locked(self):
        u = urllib.parse.urlsplit(self.path)
        path, q = u.path, urllib.parse.parse_qs(u.query)
        m = self.command
        lose_silent_runners()
        settle_runs()
        if path.startswith("/__"):
            return self.control(m, path)
        body = self.body() if m == "POST" else {}
        # Headers GitHub wants on every call.
        if (self.headers.get("Accept") != "application/vnd.github+json"
                or self.headers.get("X-GitHub-Api-Version") != "2022-11-28"
                or not self.headers.get("User-Agent")):
            return self.reply(400, {"message": "missing Accept, X-GitHub-Api-Version or User-Agent"})
        # Faults, by "METHOD /path-prefix".
        for key, lst in STATE["faults"].items():
            km, kp = key.split(" ", 1)
            if km == m and path.startswith(kp) and lst:
                f = lst.pop(0)
                if isinstance(f, int):
                    f = {"status": f}
                if f.get("claim"):
                    # GitHub moves on between two of kiln's calls: a runner takes a job.
                    r = find_runner(f["claim"])
                    if r is None or claim(r, f["claim"]) is None:
                        return self.reply(599, {"message": "fake: claim fault: no runner %s or no queued job"
                                                % f["claim"]})
                    continue
                if f.get("conflict"):
                    scope = self.scope_of(path)
                    rid = STATE["next_runner"]
                    STATE["next_runner"] += 1
                    STATE["runners"].setdefault(scope, {})[rid] = {"id": rid, "name": body["name"],
                                                                  "status": "offline", "busy": False}
                    return self.reply(409, {"message": "Already exists - A runner with the name %s already exists."
                                            % body["name"]})
                if f.get("jit_blob") is not None:
                    return self.reply(201, {"runner": {"id": 1, "name": body.get("name", "x")},
                                            "encoded_jit_config": f["jit_blob"]})
                if f.get("status", 200) != 200:
                    return self.reply(f["status"], f.get("body", {"message": "fault %d" % f["status"]}),
                                      f.get("headers"))
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else ""
        app_route = path.startswith("/app/") or path.endswith("/installation")
        if app_route:
            if not verify_jwt(tok):
                return self.reply(401, {"message": "A JSON web token could not be decoded"})
        elif not (tok == PAT or STATE["tokens"].get(tok, 0) > time.time()):
            if tok in STATE["tokens"]:
                STATE["expired_used"] += 1
            return self.reply(401, {"message": "Bad credentials"})
        reset_left()
        if STATE["remaining"] <= 0:
            return self.reply(403, {"message": "API rate limit exceeded"})

        mm = re.fullmatch(r"/repos/([^/]+)/([^/]+)/installation", path) or re.fullmatch(r"/orgs/([^/]+)/installation", path)
        if mm and m == "GET":
            if mm.group(1) != OWNER:
                return self.reply(404, {"message": "Not Found"})
            return self.reply(200, {"id": INSTALLATION, "app_id": APP_ID})
        mm = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if mm and m == "POST":
            if int(mm.group(1)) != INSTALLATION:
                return self.reply(404, {"message": "Not Found"})
            t = "ghs_" + secrets.token_hex(16)
            exp = time.time() + STATE["token_lifetime"]
            STATE["tokens"][t] = exp
            STATE["tokens_issued"] += 1
            return self.reply(201, {"token": t, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))})
        if path == "/installation/repositories" and m == "GET":
            if tok == PAT:
                return self.reply(403, {"message": "Resource not accessible by personal access token"})
            repos = [{"full_name": r, "owner": {"login": r.split("/")[0]}} for r in STATE["repos"]]
            return self.paginate(repos, "repositories", q)
        mm = re.fullmatch(r"/orgs/([^/]+)/repos", path)
        if mm and m == "GET":
            repos = [{"full_name": r, "owner": {"login": r.split("/")[0]}} for r in STATE["repos"]
                     if r.split("/")[0] == mm.group(1)]
            return self.paginate(repos, None, q)
        mm = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs", path)
        if mm and m == "GET":
            st = q.get("status", [None])[0]
            runs = [{"id": r["id"], "status": r["status"]} for r in STATE["runs"].get(mm.group(1), [])
                    if st is None or r["status"] == st]
            return self.paginate(runs, "workflow_runs", q)
        mm = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs/(\d+)/jobs", path)
        if mm and m == "GET":
            for r in STATE["runs"].get(mm.group(1), []):
                if r["id"] == int(mm.group(2)):
                    for j in r.get("jobs", []):
                        if j.get("status") == "queued":
                            STATE["seen_t"].setdefault(str(j["id"]), time.monotonic())
                    return self.paginate([dict(j, run_id=r["id"]) for j in r.get("jobs", [])], "jobs", q)
            return self.reply(404, {"message": "Not Found"})
        mm = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/jobs/(\d+)", path)
        if mm and m == "GET":
            for r in STATE["runs"].get(mm.group(1), []):
                for j in r.get("jobs", []):
                    if j["id"] == int(mm.group(2)):
                        return self.reply(200, dict({"conclusion": None, "runner_id": None, "runner_name": None},
                                                    **j, run_id=r["id"]))
            return self.reply(404, {"message": "Not Found"})
        mm = re.fullmatch(r"/(repos/[^/]+/[^/]+|orgs/[^/]+)/actions/runners(/generate-jitconfig|/(\d+))?", path)
        if mm:
            scope = self.scope_of(path)
            runners = STATE["runners"].setdefault(scope, {})
            if mm.group(2) == "/generate-jitconfig" and m == "POST":
                return self.jit(body, runners)
            if mm.group(2) is None and m == "GET":
                name = q.get("name", [None])[0]
                lst = [r for r in runners.values() if name is None or r["name"] == name]
                return self.paginate(lst, "runners", q)
            if mm.group(3) and m == "DELETE":
                rid = int(mm.group(3))
                if rid not in runners:
                    return self.reply(404, {"message": "Not Found"})
                if runners[rid].get("busy"):
                    return self.reply(422, {"message": "Bad request - Runner is busy"})
                del runners[rid]
                WAKE.notify_all()
                return self.reply(204)
        return self.reply(404, {"message": "Not Found"})

    @staticmethod
    def scope_of(path):
        p = path.split("/")
        return "%s/%s" % (p[2], p[3]) if p[1] == "repos" else p[2]

    def jit(self, body, runners):
        if body is None or not isinstance(body.get("name"), str):
            return self.reply(400, {"message": "Problems parsing JSON"})
        if "runner_group_id" not in body:
            return self.reply(422, {"message": "Invalid request.", "errors": ["runner_group_id is missing"]})
        labels = body.get("labels")
        if not isinstance(labels, list) or not 1 <= len(labels) <= 100:
            return self.reply(422, {"message": "Invalid request.", "errors": ["labels: 1 to 100 labels"]})
        if body["runner_group_id"] not in STATE["groups"]:
            return self.reply(404, {"message": "Not Found"})
        if any(r["name"] == body["name"] for r in runners.values()):
            return self.reply(409, {"message": "Already exists - A runner with the name %s already exists."
                                    % body["name"]})
        rid = STATE["next_runner"]
        STATE["next_runner"] += 1
        runner = {"id": rid, "name": body["name"], "os": "unknown", "status": "offline", "busy": False,
                  "ephemeral": True, "runner_group_id": body["runner_group_id"],
                  "labels": [{"name": x, "type": "custom"} for x in labels]}
        runners[rid] = runner
        files = {".runner": base64.b64encode(json.dumps({"agentId": rid, "agentName": body["name"],
                                                          "workFolder": body.get("work_folder", "_work"),
                                                          "serverUrl": BASE}).encode()).decode(),
                 ".credentials": base64.b64encode(b'{"scheme":"OAuth"}').decode(),
                 ".credentials_rsaparams": base64.b64encode(b'{"d":"secret-key-material"}').decode()}
        blob = base64.b64encode(json.dumps(files).encode()).decode()
        STATE["jit_sha256"][body["name"]] = hashlib.sha256(blob.encode()).hexdigest()
        STATE["jit_t"][body["name"]] = time.monotonic()
        return self.reply(201, {"runner": runner, "encoded_jit_config": blob})

    def control(self, m, path):
        if m == "GET" and path == "/__state":
            s = {k: v for k, v in STATE.items() if k != "tokens"}
            s["runners"] = {k: list(v.values()) for k, v in STATE["runners"].items()}
            return self.reply(200, s, etag=False)
        body = self.body() or {}
        if path == "/__seed":
            STATE["faults"] = {}
            STATE.update(budget=5000, remaining=5000, reset_in=3600, reset_at=0, token_lifetime=3600, requests=[],
                         stub_sleep=0, expired_used=0)
            for k in ("runs", "repos", "groups"):
                if k in body:
                    STATE[k] = body[k]
            if "runners" in body:
                STATE["runners"] = {k: {r["id"]: dict({"status": "offline", "busy": False}, **r) for r in v}
                                    for k, v in body["runners"].items()}
            return self.reply(200, {}, etag=False)
        if path == "/__started":
            # "elapsed_us": since run.sh began, by the guest's clock, before this call.
            STATE["started_t"][body.get("runner_name", "")] = time.monotonic() - body.get("elapsed_us", 0) / 1e6
            r = find_runner(body.get("runner_name"))
            if r:
                r["status"] = "online"
            return self.reply(200, {}, etag=False)
        if path == "/__claim":
            # The runner's long poll: wait (up to "wait" s) for a queued job.
            name = body.get("runner_name")
            until = time.monotonic() + float(body.get("wait", 0))
            while True:
                runner = find_runner(name)
                job = next((j for j in all_jobs() if j.get("status") == "queued"), None)
                if runner is None:
                    return self.reply(200, {"gone": True}, etag=False)
                if job is not None or time.monotonic() >= until:
                    break
                WAKE.wait(until - time.monotonic())
            if job is None:
                return self.reply(200, {"none": True}, etag=False)
            job = claim(runner, name)
            return self.reply(200, {"job": job["id"], "result": STATE["stub_result"], "sleep": STATE["stub_sleep"]},
                              etag=False)
        if path == "/__heartbeat":
            if body.get("runner_name") in STATE["beats"]:
                STATE["beats"][body["runner_name"]] = time.monotonic()
            return self.reply(200, {}, etag=False)
        if path == "/__complete":
            # The job ends with the claimed result; an ephemeral runner unregisters.
            name = body.get("runner_name")
            STATE["beats"].pop(name, None)
            for j in all_jobs():
                if j.get("runner_name") == name and j.get("status") == "in_progress":
                    j.update(status="completed", conclusion=STATE["stub_result"])
            for rs in STATE["runners"].values():
                for rid in [k for k, r in rs.items() if r["name"] == name]:
                    del rs[rid]
            return self.reply(200, {}, etag=False)
        if path == "/__queue":
            # {"repo": "O/R", "run": ID, "job": {...}}: one more queued job, the rest kept.
            runs = STATE["runs"].setdefault(body["repo"], [])
            run = next((r for r in runs if r["id"] == body["run"]), None)
            if run is None:
                run = {"id": body["run"], "status": "queued", "jobs": []}
                runs.append(run)
            if run["status"] == "completed":
                run["status"] = "queued"  # as a re-run does
            run["jobs"].append(dict({"status": "queued"}, **body["job"]))
            STATE["queued_t"][str(body["job"]["id"])] = time.monotonic()
            WAKE.notify_all()
            return self.reply(200, {}, etag=False)
        if path == "/__cancel":
            for j in all_jobs():
                if j["id"] == body.get("job"):
                    j.update(status="completed", conclusion="cancelled")
            return self.reply(200, {}, etag=False)
        if path == "/__faults":
            STATE["faults"].update(body)
            return self.reply(200, {}, etag=False)
        if path == "/__config":
            for k in ("token_lifetime", "budget", "reset_in", "stub_result", "stub_sleep", "lost_after"):
                if k in body:
                    STATE[k] = body[k]
            if "budget" in body:
                STATE["remaining"] = body["budget"]
            if "reset_in" in body:
                STATE["reset_at"] = time.monotonic() + body["reset_in"]
            return self.reply(200, {}, etag=False)
        return self.reply(404, {"message": "no such control"}, etag=False)


def make_certs(d, addr):
    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=kiln fake GitHub CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost\n" % addr +
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "app.pem")
    run("openssl", "pkey", "-in", "app.pem", "-pubout", "-out", "app.pub")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


def main():
    global ARGS, BASE
    ap = argparse.ArgumentParser(description="fake GitHub REST API for kiln's tests")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ARGS = ap.parse_args()
    make_certs(ARGS.dir, ARGS.bind)
    srv = Server((ARGS.bind, ARGS.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(ARGS.dir, "server.pem"), os.path.join(ARGS.dir, "server.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    port = srv.server_address[1]
    BASE = "https://%s:%d" % (ARGS.bind, port)
    for name, text in (("url", BASE), ("port", str(port))):
        with open(os.path.join(ARGS.dir, name + ".tmp"), "w") as f:
            f.write(text + "\n")
        os.rename(os.path.join(ARGS.dir, name + ".tmp"), os.path.join(ARGS.dir, name))
    log("listening on", BASE)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    srv.server_close()


if __name__ == "__main__":
    main()
