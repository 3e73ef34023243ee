#!/usr/bin/env python3
"""A registry's front as some registries are: a bearer-token login and transient failures.

front.py PORT_FILE UPSTREAM USER:PASS|- FAILS
         [stall | 500 | delay:SECONDS | delay=MS | cut=N | lose=N | busy-uploads]...
Listens on a free port of 127.0.0.1 (written to PORT_FILE).  The first FAILS requests to /v2/
get a 503 with a registry error body (when FAILS < 100: the first a 429 with Retry-After: 1,
the second no answer at all, the connection closed); then a request without
the token gets a 401 with a Bearer challenge whose realm is /token here, which hands out the
token for basic credentials USER:PASS only; requests with the token are passed on to UPSTREAM
(host:port) and the answers passed back.  Each request is logged to stdout as "METHOD PATH
STATUS", a request with a body as "METHOD PATH STATUS +N bytes".  With "-" for USER:PASS no
login is asked for.  With "stall", every request to /v2/ is read and never answered; with
"500", every one gets a 500 with a registry error body; with "delay:SECONDS", every one is
passed on after SECONDS (a slow registry); with "delay=MS", each blob GET is held MS milliseconds
before it is passed on, and each time more blob GETs than ever before are in flight at once,
"blob GETs at once: N" is logged; with "cut=N", the Nth PATCH (an upload's chunk) is passed on
with the first half of its bytes only (its Content-Range cut to match), and then its connection
is closed with no answer, logged as "PATCH PATH cut +N bytes" (the bytes passed on); later
requests for that upload's location go to the one the registry gave for the half, as a
registry that keeps what a cut request brought does (the reference registry's locations carry
the offset, so it has forgotten the old one).  "lose=N" is the same without that: the upload is
lost as the reference registry loses it.  With "busy-uploads", every PATCH and PUT of an upload
gets a 503 (its body read and dropped).  With "connections", each connection a client opens is
logged as "connection" before its requests.  The Host header is passed on, so that the upload
locations the registry gives name the front."""
import base64
import http.client
import http.server
import json
import sys
import threading
import time
import urllib.parse

port_file, upstream, creds, fails = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
modes = [m for m in sys.argv[5:] if m]
stall = "stall" in modes
delay_ms = int(next((m[6:] for m in modes if m.startswith("delay=")), 0))
cut = int(next((m[4:] for m in modes if m.startswith("cut=")), 0))
lose = int(next((m[5:] for m in modes if m.startswith("lose=")), 0))
busy_uploads = "busy-uploads" in modes
connections = "connections" in modes
moved = {}  # upload locations (paths) a cut PATCH left behind -> where that upload went
delay = float(next((m[6:] for m in modes if m.startswith("delay:")), 0))
broken = "500" in modes
TOKEN = "t0ken-for-" + creds.split(":")[0]
state = {"fails": fails, "blob_gets": 0, "most_blob_gets": 0, "patches": 0}
lock = threading.Lock()


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        if connections:
            print("connection", flush=True)

    def answer(self, status, body=b"", headers=(), sent=0):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        print(self.command, self.path, status, *(["+%d bytes" % sent] if sent else []),
              flush=True)

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
        if broken and self.path.startswith("/v2/"):
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
        held = delay_ms and self.command == "GET" and "/blobs/sha256:" in self.path
        if held:
            with lock:
                state["blob_gets"] += 1
                if state["blob_gets"] > state["most_blob_gets"]:
                    state["most_blob_gets"] = state["blob_gets"]
                    print("blob GETs at once:", state["blob_gets"], flush=True)
            time.sleep(delay_ms / 1000)
        up = http.client.HTTPConnection(upstream, timeout=30)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("authorization", "connection")}
        if busy_uploads and self.command in ("PATCH", "PUT") and "/blobs/uploads/" in self.path:
            return self.error(503, "UNAVAILABLE", "uploads are paused")
        if self.command == "PATCH":
            with lock:
                state["patches"] += 1
                cutting = state["patches"] in (cut, lose)
            if cutting:
                start = int(self.headers["Content-Range"].split("-")[0])
                data = data[:n // 2]
                hdrs = {k: v for k, v in hdrs.items()
                        if k.lower() not in ("content-range", "content-length")}
                hdrs["Content-Range"] = "%d-%d" % (start, start + len(data) - 1)
                up.request("PATCH", self.path, body=data, headers=hdrs)
                half = up.getresponse()
                half.read()
                up.close()
                if state["patches"] == cut:
                    where = urllib.parse.urlsplit(half.getheader("Location"))
                    moved[self.path] = where.path + "?" + where.query
                self.close_connection = True
                print("PATCH", self.path, "cut", "+%d bytes" % len(data), flush=True)
                return
        up.request(self.command, moved.get(self.path, self.path), body=data, headers=hdrs)
        r = up.getresponse()
        body = r.read()
        keep = [(k, v) for k, v in r.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        up.close()
        if held:
            with lock:
                state["blob_gets"] -= 1
        self.answer(r.status, body, keep, n)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
