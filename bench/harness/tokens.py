"""Tokens for the benchmark users: HS256, or EdDSA verified against a local JWKS."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- tokens


@dataclass
class Auth:
    """How tokens are minted and what the service must be told to verify them."""

    mode: str
    secret: str
    environment: dict[str, str]
    private_key: Any = None
    issuer: str | None = None

    def token(self, user_id: str) -> str:
        import jwt

        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + 24 * 3600}
        if self.mode == "hs256":
            return jwt.encode(claims, self.secret, "HS256")
        claims |= {"iss": self.issuer, "aud": self.issuer}
        return jwt.encode(claims, self.private_key, "EdDSA", headers={"kid": JWKS_KID})


JWKS_KID = "bench-key-1"


@contextmanager
def auth_mode(mode: str, jwks_port: int) -> Iterator[Auth]:
    secret = secrets.token_urlsafe(48)
    if mode == "hs256":
        yield Auth(mode, secret, {"BETTER_AUTH_SECRET": secret})
        return
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
    )

    private_key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private_key.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": JWKS_KID, "alg": "EdDSA", "use": "sig"}]}).encode()

    class JWKSHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", jwks_port), JWKSHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{jwks_port}"
    try:
        yield Auth(
            mode,
            secret,
            {
                # The HS256 secret stays set, as in a deployment that accepts both.
                "BETTER_AUTH_SECRET": secret,
                "BETTER_AUTH_URL": base,
                "BETTER_AUTH_JWKS_URL": f"{base}/api/auth/jwks",
                "JWT_ISSUER": base,
                "JWT_AUDIENCE": base,
            },
            private_key=private_key,
            issuer=base,
        )
    finally:
        server.shutdown()
