"""What verification yields: the caller, or why the caller cannot be identified."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    # When the token stops being accepted (its `exp` plus the leeway), as a Unix time: what a
    # long-lived request such as a live stream must not outlast.
    valid_until: float = math.inf


class AuthError(Exception):
    """The request carries no usable credentials; `detail` tells the client why (a 401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class KeysUnavailableError(Exception):
    """The token may well be valid, but its signing key cannot be fetched now (a 503).

    Answering 401 here would log users out because of an outage on the issuer's side.
    """

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds
