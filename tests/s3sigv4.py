#!/usr/bin/env python3
"""A stub S3 server that checks the AWS Signature V4 of every request with
botocore's own signer (Debian's python3-botocore), for kiln's S3 client
(cache/s3.c): s3rver does not check V4 signatures. Keys: AK/SECRET, and
AKTEMP/SECRET, the IAM role's, only with its session token signed along;
any region. A request whose signature differs gets 403 and its canonical
request on stderr. It keeps objects in memory: PUT (whole or parts),
CreateMultipartUpload (?uploads=), CompleteMultipartUpload, GET, DELETE.
It also plays the EC2 instance metadata service (IMDSv2) of that role, for
authentication_type: iam. Prints 127.0.0.1:PORT when it listens.
Usage: tests/s3sigv4.py"""
import re
import sys
from http.server import HTTPServer, BaseHTTPRequestHandler

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(AK|AKTEMP)/\d{8}/([^/]+)/s3/aws4_request, "
                  r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")
objects = {}


class Handler(BaseHTTPRequestHandler):
    def signed(self, body):
        m = AUTH.match(self.headers.get("Authorization", ""))
        if not m:
            return False, "no or malformed Authorization"
        key, region, signed, signature = m.groups()
        headers = {k: self.headers[k] for k in signed.split(";")}
        if key == "AKTEMP" and headers.get("x-amz-security-token") != "session-token":
            return False, "temporary credentials without their signed session token"
        req = AWSRequest(method=self.command, url="http://%s%s" % (self.headers["Host"], self.path),
                         headers=headers, data=body)
        req.context["timestamp"] = self.headers["x-amz-date"]
        auth = S3SigV4Auth(Credentials(key, "SECRET"), "s3", region)
        canonical = auth.canonical_request(req)
        sig = auth.signature(auth.string_to_sign(req, canonical), req)
        return sig == signature, canonical

    def reply(self, status, body=b"", etag=None):
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def imds(self):
        if self.command == "PUT" and self.path == "/latest/api/token":
            return self.reply(200, b"imds-session")
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
            return self.reply(401)
        if self.path == "/latest/meta-data/iam/security-credentials/":
            return self.reply(200, b"kiln-role")
        if self.path == "/latest/meta-data/iam/security-credentials/kiln-role":
            return self.reply(200, b'{"Code": "Success", "AccessKeyId": "AKTEMP", "SecretAccessKey": "SECRET",'
                              b' "Token": "session-token"}')
        return self.reply(404)

    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/latest/"):
            return self.imds()
        ok, canonical = self.signed(body)
        if not ok:
            sys.stderr.write("s3sigv4: %s %s: signature mismatch; canonical request:\n%s\n"
                             % (self.command, self.path, canonical))
            return self.reply(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
        path, _, query = self.path.partition("?")
        if self.command == "POST" and query == "uploads=":
            objects[path + "#parts"] = {}
            return self.reply(200, b"<R><UploadId>u1</UploadId></R>")
        if self.command == "PUT" and query.startswith("partNumber="):
            num = int(query.split("&")[0].split("=")[1])
            objects[path + "#parts"][num] = body
            return self.reply(200, etag='"p%d"' % num)
        if self.command == "POST":
            parts = objects.pop(path + "#parts")
            objects[path] = b"".join(parts[k] for k in sorted(parts))
            return self.reply(200, b"<R><ETag>&quot;m%d&quot;</ETag></R>" % len(objects[path]))
        if self.command == "PUT":
            objects[path] = body
            return self.reply(200, etag='"s%d"' % len(body))
        if self.command == "DELETE":
            objects.pop(path + "#parts", None)
            return self.reply(204)
        if path not in objects:
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        etag = '"%s%d"' % ("s", len(objects[path]))
        return self.reply(200, objects[path], etag)

    do_GET = do_PUT = do_POST = do_DELETE = handle_one

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print("127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
