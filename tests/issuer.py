"""A stand-in token issuer: signing keys of every kind, and its JWKS served over real HTTP.

The JWKS is served by a small threaded HTTP server on a free loopback port, so the service
fetches it exactly as it fetches Better Auth's: over the network, with timeouts, and it can be
stopped (connection refused) and started again on the same port.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.server import free_port

ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")


@dataclass
class SigningKey:
    algorithm: str
    private_key: Any
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    declare_alg: bool = True  # whether the JWKS entry states "alg" (Better Auth's does)
    use: str | None = None

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        return bytes(
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def jwk(self) -> dict[str, Any]:
        algorithm = {"OKP": OKPAlgorithm, "EC": ECAlgorithm, "RSA": RSAAlgorithm}[_kty(self)]
        entry: dict[str, Any] = algorithm.to_jwk(self.public_key, as_dict=True)
        entry["kid"] = self.kid
        if self.declare_alg:
            entry["alg"] = self.algorithm
        if self.use is not None:
            entry["use"] = self.use
        return entry

    def sign(self, claims: dict[str, Any], *, algorithm: str | None = None) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm or self.algorithm, headers={"kid": self.kid}
        )

    def with_new_kid(self, **changes: Any) -> SigningKey:
        values = {
            "algorithm": self.algorithm,
            "private_key": self.private_key,
            "declare_alg": self.declare_alg,
            "use": self.use,
        }
        return SigningKey(**(values | changes))


def _kty(key: SigningKey) -> str:
    if isinstance(key.private_key, ed25519.Ed25519PrivateKey):
        return "OKP"
    if isinstance(key.private_key, ec.EllipticCurvePrivateKey):
        return "EC"
    return "RSA"


def generate_private_key(algorithm: str) -> Any:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES512": ec.SECP521R1()}[algorithm]
        return ec.generate_private_key(curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksIssuer:
    """Serves `{"keys": [...]}` at /api/auth/jwks; counts fetches; can be slow, failing or down."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: list[SigningKey] = []
        self.extra_entries: list[dict[str, Any]] = []
        self.fetches = 0
        self.delay_seconds = 0.0
        self.status = 200
        self.raw_body: bytes | None = None  # served instead of the JWKS when set
        self._server: ThreadingHTTPServer | None = None

    def publish(self, *keys: SigningKey) -> None:
        self.keys = list(keys)

    def document(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.keys] + self.extra_entries}

    def token(self, key: SigningKey, user_id: str, **claims: Any) -> str:
        """A token as Better Auth's JWT plugin makes it: iss and aud are its base URL."""
        now = int(time.time())
        payload = {"sub": user_id, "iat": now, "exp": now + 900, "iss": self.url, "aud": self.url}
        payload |= claims
        return key.sign({k: v for k, v in payload.items() if v is not None})

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                time.sleep(issuer.delay_seconds)
                if self.path != "/api/auth/jwks":
                    self.send_error(404)
                    return
                body = issuer.raw_body or json.dumps(issuer.document()).encode()
                self.send_response(issuer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Down: the port refuses connections until `start` is called again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
