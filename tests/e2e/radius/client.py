#!/usr/bin/env python3
"""A RADIUS client written for tests/e2e/radius.rs, independently of Jeton's code: packets are built and
checked here from the RFCs with Python's hashlib/hmac, and MS-CHAPv2 uses PyCryptodome's MD4 and DES.

    client.py SERVER:PORT SECRET pap USER PASSWORD [--class ORG] [--ma good|bad|none] [--twice] [--bind IP]
    client.py SERVER:PORT SECRET mschapv2 USER PASSWORD [--class ORG]
    client.py totp BASE32-SECRET [--step-offset N]

`pap` and `mschapv2` print one JSON object: the request sent (hex), and every reply received (hex, code,
attributes, and whether its Response Authenticator and Message-Authenticator check out with SECRET).
`--twice` sends the same datagram again from the same socket once the first reply is in (a retransmission).
`mschapv2` also checks the MS-CHAP2-Success authenticator response and decrypts the MS-MPPE keys (RFC 2548),
comparing them with the keys RFC 3079 derives from the password. `totp` prints the current RFC 6238 code.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

try:
    from Cryptodome.Cipher import DES
    from Cryptodome.Hash import MD4
except ImportError:  # PyCryptodome installed from PyPI under its own name
    from Crypto.Cipher import DES
    from Crypto.Hash import MD4

ACCESS_REQUEST = 1
USER_NAME = 1
USER_PASSWORD = 2
CLASS = 25
VENDOR_SPECIFIC = 26
MESSAGE_AUTHENTICATOR = 80
MICROSOFT = 311
MS_CHAP_CHALLENGE = 11
MS_CHAP2_RESPONSE = 25
MS_CHAP2_SUCCESS = 26
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17


def attribute(typ, value):
    if len(value) > 253:
        raise ValueError("attribute too long")
    return bytes([typ, 2 + len(value)]) + value


def vendor_attribute(vendor, typ, value):
    return attribute(VENDOR_SPECIFIC, struct.pack("!I", vendor) + bytes([typ, 2 + len(value)]) + value)


def hide_password(password, secret, authenticator):
    """User-Password (RFC 2865 section 5.2)."""
    p = password + b"\0" * (-len(password) % 16 or (16 if not password else 0))
    out, last = b"", authenticator
    for i in range(0, len(p), 16):
        b = hashlib.md5(secret + last).digest()
        c = bytes(x ^ y for x, y in zip(p[i : i + 16], b))
        out += c
        last = c
    return out


def request(identifier, authenticator, attributes, secret, ma):
    """An Access-Request with `attributes` and, unless `ma` is "none", a Message-Authenticator (RFC 3579
    section 3.2), right or (`ma` "bad") with one bit flipped."""
    body = b"".join(attributes)
    if ma != "none":
        body += attribute(MESSAGE_AUTHENTICATOR, b"\0" * 16)
    length = 20 + len(body)
    packet = bytearray(struct.pack("!BBH", ACCESS_REQUEST, identifier, length) + authenticator + body)
    if ma != "none":
        mac = bytearray(hmac.new(secret, bytes(packet), hashlib.md5).digest())
        if ma == "bad":
            mac[0] ^= 1
        packet[-16:] = mac
    return bytes(packet)


def parse_attributes(data):
    out = []
    while data:
        if len(data) < 2 or data[1] < 2 or data[1] > len(data):
            raise ValueError("malformed attributes")
        out.append((data[0], data[2 : data[1]]))
        data = data[data[1] :]
    return out


def vendor_specific_ok(value):
    """Whether a Vendor-Specific value is framed as RFC 2865 section 5.26 says: a vendor id (its high octet
    0), then sub-attributes (type, length, value) that fill the rest exactly."""
    if len(value) < 7 or value[0] != 0:
        return False
    try:
        parse_attributes(value[4:])
    except ValueError:
        return False
    return True


def vendor_attributes(attributes, vendor):
    out = []
    for typ, value in attributes:
        if typ != VENDOR_SPECIFIC or not vendor_specific_ok(value) or struct.unpack("!I", value[:4])[0] != vendor:
            continue
        out.extend(parse_attributes(value[4:]))
    return out


def check_reply(reply, sent, secret):
    """Decodes a reply to `sent` and checks its authenticators."""
    code, identifier, length = struct.unpack("!BBH", reply[:4])
    assert length == len(reply), f"Length {length} for a datagram of {len(reply)} bytes"
    request_authenticator = sent[4:20]
    attributes = parse_attributes(reply[20:])
    expected = hashlib.md5(reply[:4] + request_authenticator + reply[20:] + secret).digest()
    response_ok = hmac.compare_digest(expected, reply[4:20])
    # Message-Authenticator of a reply: over the reply with the Request Authenticator in place of its own and
    # the Message-Authenticator's value zeroed.
    ma = "absent"
    offset = 20
    for typ, value in attributes:
        if typ == MESSAGE_AUTHENTICATOR:
            zeroed = bytearray(reply)
            zeroed[4:20] = request_authenticator
            zeroed[offset + 2 : offset + 18] = b"\0" * 16
            mac = hmac.new(secret, bytes(zeroed), hashlib.md5).digest()
            ma = "ok" if len(value) == 16 and hmac.compare_digest(mac, value) else "bad"
        offset += 2 + len(value)
    return {
        "hex": reply.hex(),
        "code": code,
        "identifier": identifier,
        "identifier_matches": identifier == sent[1],
        "response_authenticator": "ok" if response_ok else "bad",
        "message_authenticator": ma,
        "message_authenticator_first": bool(attributes) and attributes[0][0] == MESSAGE_AUTHENTICATOR,
        "attributes": [[t, v.hex()] for t, v in attributes],
        "vendor_specific_ok": all(vendor_specific_ok(v) for t, v in attributes if t == VENDOR_SPECIFIC),
        "vendor": [[MICROSOFT, t, v.hex()] for t, v in vendor_attributes(attributes, MICROSOFT)],
    }


def exchange(args, packet, times):
    host, port = args.server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.bind:
        sock.bind((args.bind, 0))
    sock.settimeout(args.timeout)
    replies = []
    for _ in range(times):
        sock.sendto(packet, (host, int(port)))
        try:
            data, _ = sock.recvfrom(8192)
        except socket.timeout:
            break
        replies.append(data)
    sock.close()
    return replies


def base_attributes(args):
    attrs = [attribute(USER_NAME, args.user.encode())]
    if args.org_class:
        attrs.append(attribute(CLASS, args.org_class.encode()))
    return attrs


def pap(args, secret):
    authenticator = os.urandom(16)
    attrs = base_attributes(args)
    attrs.append(attribute(USER_PASSWORD, hide_password(args.password.encode(), secret, authenticator)))
    packet = request(os.urandom(1)[0], authenticator, attrs, secret, args.ma)
    replies = exchange(args, packet, 2 if args.twice else 1)
    return {"request": packet.hex(), "replies": [check_reply(r, packet, secret) for r in replies]}


# MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079, RFC 2548).


def nt_password_hash(password):
    return MD4.new(password.encode("utf-16-le")).digest()


def des_key(seven):
    """A 7-byte key spread over 8 bytes (parity bits left 0: DES ignores them)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def challenge_response(challenge, password_hash):
    z = password_hash + b"\0" * 5
    return b"".join(DES.new(des_key(z[i : i + 7]), DES.MODE_ECB).encrypt(challenge) for i in (0, 7, 14))


def challenge_hash(peer, authenticator, user):
    return hashlib.sha1(peer + authenticator + user).digest()[:8]


MAGIC1 = b"Magic server to client signing constant"
MAGIC2 = b"Pad to make it do more than one iteration"
MPPE_MASTER = b"This is the MPPE Master Key"
MPPE_SEND_SERVER = b"On the client side, this is the receive key; on the server side, it is the send key."
MPPE_RECV_SERVER = b"On the client side, this is the send key; on the server side, it is the receive key."


def authenticator_response(password_hash, nt_response, chash):
    hash_hash = MD4.new(password_hash).digest()
    digest = hashlib.sha1(hash_hash + nt_response + MAGIC1).digest()
    digest = hashlib.sha1(digest + chash + MAGIC2).digest()
    return "S=" + digest.hex().upper()


def mppe_keys(password_hash, nt_response):
    """(send, receive) keys of the server, 128 bits (RFC 3079 section 3.3)."""
    master = hashlib.sha1(MD4.new(password_hash).digest() + nt_response + MPPE_MASTER).digest()[:16]

    def start_key(magic):
        return hashlib.sha1(master + b"\0" * 40 + magic + b"\xf2" * 40).digest()[:16]

    return start_key(MPPE_SEND_SERVER), start_key(MPPE_RECV_SERVER)


def decrypt_mppe(value, secret, request_authenticator):
    """The key in an MS-MPPE-Send-Key or -Recv-Key value (RFC 2548 section 2.4.2): salt, then the
    encrypted Key-Length, key and padding."""
    salt, cipher = value[:2], value[2:]
    if len(cipher) == 0 or len(cipher) % 16:
        raise ValueError(f"encrypted key of {len(cipher)} bytes")
    plain, last = b"", request_authenticator + salt
    for i in range(0, len(cipher), 16):
        b = hashlib.md5(secret + last).digest()
        c = cipher[i : i + 16]
        plain += bytes(x ^ y for x, y in zip(c, b))
        last = c
    length = plain[0]
    if length + 1 > len(plain):
        raise ValueError("Key-Length past the end")
    return salt, plain[1 : 1 + length]


def mschapv2(args, secret):
    user = args.user.encode()
    auth_challenge, peer_challenge = os.urandom(16), os.urandom(16)
    password_hash = nt_password_hash(args.password)
    chash = challenge_hash(peer_challenge, auth_challenge, user)
    nt_response = challenge_response(chash, password_hash)
    ident = os.urandom(1)[0]
    response = bytes([ident, 0]) + peer_challenge + b"\0" * 8 + nt_response
    attrs = base_attributes(args)
    attrs.append(vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE, auth_challenge))
    attrs.append(vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE, response))
    authenticator = os.urandom(16)
    packet = request(os.urandom(1)[0], authenticator, attrs, secret, args.ma)
    out = {"request": packet.hex(), "replies": []}
    for raw in exchange(args, packet, 1):
        reply = check_reply(raw, packet, secret)
        out["replies"].append(reply)
        vsa = {t: bytes.fromhex(v) for _, t, v in reply["vendor"]}
        found = {}
        if MS_CHAP2_SUCCESS in vsa:
            success = vsa[MS_CHAP2_SUCCESS]
            found["success_ident_matches"] = len(success) > 0 and success[0] == ident
            found["authenticator_response"] = success[1:43].decode("ascii", "replace")
            found["authenticator_response_ok"] = found["authenticator_response"] == authenticator_response(
                password_hash, nt_response, chash
            )
        send, recv = mppe_keys(password_hash, nt_response)
        salts = []
        for name, typ, want in (("send_key", MS_MPPE_SEND_KEY, send), ("recv_key", MS_MPPE_RECV_KEY, recv)):
            if typ in vsa:
                salt, key = decrypt_mppe(vsa[typ], secret, authenticator)
                salts.append(salt)
                found[name] = key.hex()
                found[name + "_ok"] = key == want
                found[name + "_salt_high_bit"] = bool(salt[0] & 0x80)
        found["salts_differ"] = len(salts) == 2 and salts[0] != salts[1]
        reply["mschapv2"] = found
    return out


def totp(secret, step_offset):
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = int(time.time()) // 30 + step_offset
    mac = hmac.new(key, struct.pack("!Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack("!I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "totp":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("secret")
        p.add_argument("--step-offset", type=int, default=0)
        a = p.parse_args()
        print(totp(a.secret, a.step_offset))
        return
    p = argparse.ArgumentParser()
    p.add_argument("server")
    p.add_argument("secret")
    p.add_argument("mode", choices=["pap", "mschapv2"])
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--class", dest="org_class", default="")
    p.add_argument("--ma", choices=["good", "bad", "none"], default="good")
    p.add_argument("--twice", action="store_true")
    p.add_argument("--bind", default="")
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()
    secret = args.secret.encode()
    out = pap(args, secret) if args.mode == "pap" else mschapv2(args, secret)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
