"""The OPC UA peer of the end-to-end tests: an asyncua server, and an asyncua client that
checks what the server holds independently of the adaptor.

    opcua_peer.py serve PORT [USER PASSWORD] [--no-subscriptions]
                                               # a server on 127.0.0.1:PORT, policy None;
                                               # --no-subscriptions answers
                                               # CreateSubscription BadServiceUnsupported
    opcua_peer.py serve-secure PORT DIR [USER PASSWORD] [--every-policy] [--strict]
                                               # Basic256Sha256 (Sign, SignAndEncrypt) and
                                               # Aes128Sha256RsaOaep (SignAndEncrypt); its
                                               # and a client's certificate and key in DIR;
                                               # --every-policy adds Aes128Sha256RsaOaep
                                               # Sign and policy None (where a password
                                               # must then be encrypted); the
                                               # SHA-1 of every client certificate shown in
                                               # CreateSession goes to DIR/clients.log, and
                                               # --strict refuses those not in DIR/trusted
    opcua_peer.py serve-bench PORT DEVICES ITEMS
                                               # ns=2;s=B<d>.<i> (Int64) for each device d
                                               # and item i, all set to the wall-clock time
                                               # in ms every second (scripts/bench-opcua.sh)
    opcua_peer.py read URL NODE...             # one JSON line per node: [variant type, value]
    opcua_peer.py write URL NODE TYPE VALUE    # writes VALUE as TYPE (an asyncua VariantType)

The server's namespace 2 holds one writable variable per OPCUADevice type, named after
its asyncua VariantType (ns=2;s=Int32, ...), `Ticker` (Int32, +1 every 200 ms, for
subscriptions), `Locked` (Int32, not writable), `Blob` (a ByteString of 150,000 bytes,
byte i = i mod 251) and `Upload` (a writable ByteString, empty at first). With USER and PASSWORD only that user
may log in; otherwise anonymous logins are taken. Values are printed as the adaptor
formats them (byte strings as base64, date-times in RFC 3339).
"""

import asyncio
import base64
import datetime
import hashlib
import json
import logging
import sys

from asyncua import Client, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole

INITIAL = {
    "Float": (1.5, ua.VariantType.Float),
    "Double": (-2.25, ua.VariantType.Double),
    "Int64": (-9000000000, ua.VariantType.Int64),
    "Int32": (-70000, ua.VariantType.Int32),
    "Int16": (-300, ua.VariantType.Int16),
    "UInt64": (18000000000000000000, ua.VariantType.UInt64),
    "UInt32": (4000000000, ua.VariantType.UInt32),
    "UInt16": (60000, ua.VariantType.UInt16),
    "String": ("initial", ua.VariantType.String),
    "Boolean": (False, ua.VariantType.Boolean),
    "ByteString": (b"\x00\x01", ua.VariantType.ByteString),
    "DateTime": (
        datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        ua.VariantType.DateTime,
    ),
}


# 150,000 bytes, byte i = i mod 251.
BLOB = bytes(i % 251 for i in range(150_000))


class OneUser:
    """Lets only USER with PASSWORD in."""

    def __init__(self, user, password):
        self.user, self.password = user, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.user and password == self.password:
            return User(role=UserRole.User)
        return None


def certificate(directory, name):
    """A self-signed RSA 2048 certificate and key for NAME in DIRECTORY: NAME.der,
    NAME.crt and NAME.key.pem (PEM, PKCS#8; asyncua reads the format off the suffix), and NAME.sha1 (the certificate's thumbprint)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"octopus test {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    uri = "urn:octopus:adaptor:opcua" if name == "client" else "urn:octopus:test:server"
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    base = f"{directory}/{name}"
    der = cert.public_bytes(serialization.Encoding.DER)
    with open(f"{base}.der", "wb") as f:
        f.write(der)
    with open(f"{base}.sha1", "w") as f:
        f.write(hashlib.sha1(der).hexdigest().upper())
    with open(f"{base}.crt", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(f"{base}.key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Clients:
    """Records each client certificate's SHA-1 (upper-case hex) in DIR/clients.log; when
    strict, refuses those whose thumbprint is not a line of DIR/trusted, as a server with
    a trust list does."""

    def __init__(self, directory, strict):
        self.directory, self.strict = directory, strict

    async def __call__(self, cert, app_description):
        from cryptography.hazmat.primitives import serialization

        der = cert.public_bytes(serialization.Encoding.DER)
        thumbprint = hashlib.sha1(der).hexdigest().upper()
        with open(f"{self.directory}/clients.log", "a") as f:
            f.write(thumbprint + "\n")
        if self.strict:
            try:
                with open(f"{self.directory}/trusted") as f:
                    trusted = {line.strip().upper() for line in f}
            except FileNotFoundError:
                trusted = set()
            if thumbprint not in trusted:
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


# What serve-secure offers: not Aes128Sha256RsaOaep with Sign, so asking for it shows
# the refusal of a policy the server does not offer.
SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
]


async def serve(
    port, user=None, password=None, secure_dir=None, every_policy=False, strict=False, subscriptions=True
):
    server = Server(user_manager=OneUser(user, password) if user else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/octopus/")
    if secure_dir:
        # asyncua accepts any client certificate when no validator is set; policy None
        # stays for GetEndpoints only (no None endpoint is offered).
        certificate(secure_dir, "server")
        certificate(secure_dir, "client")
        policies = SECURE_POLICIES + (
            [ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign, ua.SecurityPolicyType.NoSecurity]
            if every_policy
            else []
        )
        server.set_security_policy(policies)
        server.set_certificate_validator(Clients(secure_dir, strict))
        await server.load_certificate(f"{secure_dir}/server.der")
        await server.load_private_key(f"{secure_dir}/server.key.pem")
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if user:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    if not subscriptions:
        # A server with no Subscription service set, as some embedded ones are.
        async def unsupported(*args, **kwargs):
            raise ServiceError(ua.StatusCodes.BadServiceUnsupported)

        server.iserver.subscription_service.create_subscription = unsupported
    idx = await server.register_namespace("urn:octopus:test")
    device = await server.nodes.objects.add_object(ua.NodeId("Device", idx), f"{idx}:Device")
    for name, (value, kind) in INITIAL.items():
        node = await device.add_variable(ua.NodeId(name, idx), f"{idx}:{name}", ua.Variant(value, kind))
        await node.set_writable()
    ticker = await device.add_variable(
        ua.NodeId("Ticker", idx), f"{idx}:Ticker", ua.Variant(0, ua.VariantType.Int32)
    )
    await device.add_variable(ua.NodeId("Locked", idx), f"{idx}:Locked", ua.Variant(7, ua.VariantType.Int32))
    # Values larger than one 64 KiB chunk, to read and to write.
    await device.add_variable(ua.NodeId("Blob", idx), f"{idx}:Blob", ua.Variant(BLOB, ua.VariantType.ByteString))
    upload = await device.add_variable(
        ua.NodeId("Upload", idx), f"{idx}:Upload", ua.Variant(b"", ua.VariantType.ByteString)
    )
    await upload.set_writable()
    async with server:
        print("ready", flush=True)
        tick = 0
        while True:
            await asyncio.sleep(0.2)
            tick += 1
            await ticker.write_value(ua.Variant(tick, ua.VariantType.Int32))


async def serve_bench(port, devices, items):
    """Every second, sets every node to the current wall-clock time in milliseconds, so
    the reader's clock minus the value is the time from the change to the reading."""
    import time

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/octopus/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:octopus:bench")
    folder = await server.nodes.objects.add_object(ua.NodeId("Bench", idx), f"{idx}:Bench")
    nodes = []
    for d in range(devices):
        for i in range(items):
            name = f"B{d}.{i}"
            node = await folder.add_variable(ua.NodeId(name, idx), f"{idx}:{name}", ua.Variant(0, ua.VariantType.Int64))
            nodes.append(node.nodeid)
    async with server:
        print("ready", flush=True)
        while True:
            started = time.monotonic()
            now_ms = time.time_ns() // 1_000_000
            value = ua.DataValue(ua.Variant(now_ms, ua.VariantType.Int64))
            for nodeid in nodes:
                await server.write_attribute_value(nodeid, value)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def text(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def read(url, nodes):
    async with Client(url, timeout=10) as client:
        for node in nodes:
            variant = await client.get_node(node).read_data_value()
            print(json.dumps([variant.Value.VariantType.name, text(variant.Value.Value)]), flush=True)


async def write(url, node, kind, value):
    kind = ua.VariantType[kind]
    if kind == ua.VariantType.Boolean:
        parsed = value == "true"
    elif kind in (ua.VariantType.Float, ua.VariantType.Double):
        parsed = float(value)
    elif kind in (ua.VariantType.String,):
        parsed = value
    else:
        parsed = int(value)
    async with Client(url, timeout=10) as client:
        await client.get_node(node).write_value(ua.DataValue(ua.Variant(parsed, kind)))


def main():
    logging.basicConfig(level=logging.ERROR)
    command, args = sys.argv[1], sys.argv[2:]
    flags = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if command == "serve":
        asyncio.run(serve(int(args[0]), *args[1:3], subscriptions="--no-subscriptions" not in flags))
    elif command == "serve-bench":
        asyncio.run(serve_bench(*(int(a) for a in args[:3])))
    elif command == "serve-secure":
        asyncio.run(
            serve(
                int(args[0]),
                *args[2:4],
                secure_dir=args[1],
                every_policy="--every-policy" in flags,
                strict="--strict" in flags,
            )
        )
    elif command == "read":
        asyncio.run(read(args[0], args[1:]))
    elif command == "write":
        asyncio.run(write(*args[:4]))
    else:
        sys.exit(f"unknown command {command}")


main()
