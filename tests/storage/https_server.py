"""A stdlib HTTPS file server for the remote-input tests: Range, ETag, and a token or a signature to pass.

    python https_server.py PORT ROOT CERT KEY TOKEN

A request passes with ``Authorization: Bearer TOKEN`` or a query ``?sig=TOKEN`` (a signed URL's
stand-in). ``GET /_stats`` counts the GETs answered whole (200) and by range (206).
"""

import hashlib
import json
import os
import re
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT, ROOT, CERT, KEY, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
STATS = {"whole": 0, "ranged": 0}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _file(self):
        parts = urlsplit(self.path)
        if parts.path == "/_stats":
            return "stats", None
        auth = self.headers.get("Authorization", "")
        sig = parse_qs(parts.query).get("sig", [""])[0]
        if auth != f"Bearer {TOKEN}" and sig != TOKEN:
            self.send_error(401)
            return None, None
        path = os.path.join(ROOT, parts.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return None, None
        return path, os.stat(path)

    def _headers(self, status, length, info):
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"' + hashlib.md5(f"{info.st_size}-{info.st_mtime_ns}".encode()).hexdigest() + '"')
        self.end_headers()

    def do_HEAD(self):
        _, info = self._file()
        if info is not None:
            self._headers(200, info.st_size, info)

    def do_GET(self):
        path, info = self._file()
        if path == "stats":
            body = json.dumps(STATS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if info is None:
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = 0, info.st_size - 1
        if match:
            start = int(match.group(1))
            end = min(end, int(match.group(2))) if match.group(2) else end
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        STATS["ranged" if match else "whole"] += 1
        self._headers(206 if match else 200, len(body), info)
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
