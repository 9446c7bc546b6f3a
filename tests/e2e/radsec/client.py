#!/usr/bin/env python3
"""A RadSec (RFC 6614) client for tests/e2e/radsec.rs, written from the RFCs with Python's ssl, hmac and
hashlib only (none of Jeton's code): over one TLS connection it sends a Status-Server, then one PAP
Access-Request per (user, password, class) argument, pipelined, and prints one JSON line per reply with its
code and whether its Response Authenticator and Message-Authenticator check. The shared secret is "radsec".

Usage: client.py PORT CA CERT KEY [user:password:class ...]   (CERT "-" presents no client certificate)
"""
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import sys

SECRET = b"radsec"


def packet(code, ident, attrs, auth):
    ma = bytes([80, 18]) + bytes(16)
    body = ma + b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    pkt = bytes([code, ident]) + struct.pack("!H", 20 + len(body)) + auth + body
    mac = hmac.new(SECRET, pkt, hashlib.md5).digest()
    return pkt[:22] + mac + pkt[38:]


def hide(password, auth):
    padded = password + bytes(-len(password) % 16 or (16 if not password else 0))
    out, prev = b"", auth
    for i in range(0, len(padded), 16):
        block = bytes(a ^ b for a, b in zip(padded[i:i + 16], hashlib.md5(SECRET + prev).digest()))
        out += block
        prev = block
    return out


def check(reply, auth):
    resp_ok = hashlib.md5(reply[:4] + auth + reply[20:] + SECRET).digest() == reply[4:20]
    ma_ok = None
    i = 20
    while i + 2 <= len(reply):
        t, n = reply[i], reply[i + 1]
        if n < 2:
            break
        if t == 80 and n == 18:
            zeroed = reply[:4] + auth + reply[20:i + 2] + bytes(16) + reply[i + 18:]
            ma_ok = hmac.compare_digest(hmac.new(SECRET, zeroed, hashlib.md5).digest(), reply[i + 2:i + 18])
        i += n
    return resp_ok, ma_ok


def read_packet(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    length = struct.unpack("!H", head[2:4])[0]
    rest = b""
    while len(rest) < length - 4:
        chunk = s.recv(length - 4 - len(rest))
        if not chunk:
            return None
        rest += chunk
    return head + rest


def main():
    port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    requests = {}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            s = ctx.wrap_socket(raw)
            auth = os.urandom(16)
            s.sendall(packet(12, 0, [], auth))
            requests[0] = ("status", auth)
            for n, arg in enumerate(sys.argv[5:], start=1):
                user, password, org = arg.split(":")
                auth = os.urandom(16)
                attrs = [(1, user.encode()), (2, hide(password.encode(), auth))]
                if org:
                    attrs.append((25, org.encode()))
                s.sendall(packet(1, n, attrs, auth))
                requests[n] = (user, auth)
            while requests:
                reply = read_packet(s)
                if reply is None:
                    print(json.dumps({"closed": True}))
                    return
                what, auth = requests.pop(reply[1])
                resp_ok, ma_ok = check(reply, auth)
                print(json.dumps({"for": what, "code": reply[0], "response_ok": resp_ok, "ma_ok": ma_ok}))
        except (ssl.SSLError, ConnectionError, OSError) as e:
            print(json.dumps({"tls_error": str(e)}))


main()
