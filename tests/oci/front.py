#!/usr/bin/env python3
"""A registry's front as some registries are: a bearer-token login and transient failures.

front.py PORT_FILE UPSTREAM USER:PASS|- FAILS [stall|500|delay:SECONDS]
Listens on a free port of 127.0.0.1 (written to PORT_FILE).  The first FAILS requests to /v2/
get a 503 with a registry error body (when FAILS < 100: the first a 429 with Retry-After: 1,
the second no answer at all, the connection closed); then a request without
the token gets a 401 with a Bearer challenge whose realm is /token here, which hands out the
token for basic credentials USER:PASS only; requests with the token are passed on to UPSTREAM
(host:port) and the answers passed back.  Each request is logged to stdout as "METHOD PATH
STATUS".  With "-" for USER:PASS no login is asked for.  With "stall", every request to /v2/
is read and never answered; with "500", every one gets a 500 with a registry error body; with
"delay:SECONDS", every one is passed on after SECONDS (a slow registry)."""
import base64
import http.client
import http.server
import json
import sys
import time

port_file, upstream, creds, fails = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else ""
stall = mode == "stall"
delay = float(mode[6:]) if mode.startswith("delay:") else 0
TOKEN = "t0ken-for-" + creds.split(":")[0]
state = {"fails": fails}


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        print(self.command, self.path, status, flush=True)

    def error(self, status, code, message, headers=()):
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.answer(status, body, [("Content-Type", "application/json")] + list(headers))

    def handle_any(self):
        if self.path.startswith("/token"):
            want = "Basic " + base64.b64encode(creds.encode()).decode()
            if self.headers.get("Authorization") != want:
                return self.error(401, "UNAUTHORIZED", "bad credentials for the token")
            return self.answer(200, json.dumps({"token": TOKEN}).encode(),
                               [("Content-Type", "application/json")])
        if stall:
            print(self.command, self.path, "stalled", flush=True)
            time.sleep(3600)
        if mode == "500" and self.path.startswith("/v2/"):
            return self.error(500, "UNKNOWN", "the storage is broken")
        if delay and self.path.startswith("/v2/"):
            time.sleep(delay)
        if state["fails"] > 0:
            first = state["fails"] == fails
            state["fails"] -= 1
            if first and fails < 100:
                return self.error(429, "TOOMANYREQUESTS", "slow down", [("Retry-After", "1")])
            if state["fails"] == fails - 2 and fails < 100:
                self.close_connection = True  # the connection closed with no answer at all
                print(self.command, self.path, "dropped", flush=True)
                return
            return self.error(503, "UNAVAILABLE", "the front is busy")
        if creds != "-" and self.headers.get("Authorization") != "Bearer " + TOKEN:
            host = "127.0.0.1:%d" % self.server.server_address[1]
            return self.error(401, "UNAUTHORIZED", "authentication required", [(
                "WWW-Authenticate",
                'Bearer realm="http://%s/token",service="front",scope="repository:x:pull"' %
                host)])
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else None
        up = http.client.HTTPConnection(upstream, timeout=30)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("authorization", "host", "connection")}
        up.request(self.command, self.path, body=data, headers=hdrs)
        r = up.getresponse()
        body = r.read()
        keep = [(k, v) for k, v in r.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        up.close()
        self.answer(r.status, body, keep)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
