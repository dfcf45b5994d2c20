"""API tokens: random, shown once, stored only as SHA-256 hashes (tokens carry 256 bits of
entropy, so a fast hash is enough: nothing to brute-force). The operator's token lives in the
data directory as a hash too, and only the operator endpoints accept it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path


def new_token(prefix: str = "kt") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def admin_hash_path(data_dir: Path) -> Path:
    return data_dir / "operator-token.sha256"


def ensure_operator_token(data_dir: Path) -> str | None:
    """Create the operator token on first start; returns it then (to print once), else None."""
    path = admin_hash_path(data_dir)
    if path.exists():
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    token = new_token("ko")
    path.write_text(hash_token(token))
    path.chmod(0o600)
    return token


def is_operator(data_dir: Path, token: str) -> bool:
    path = admin_hash_path(data_dir)
    return path.exists() and hmac.compare_digest(path.read_text().strip(), hash_token(token))
