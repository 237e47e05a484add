"""Fernet encryption of secrets at rest (connection passwords and extras)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, value: str | None) -> str | None:
        return None if value is None else self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "stored secret cannot be decrypted with the configured AIRLOCK_FERNET_KEY"
            ) from None

    def encrypt_json(self, value: dict[str, Any]) -> str | None:
        return self.encrypt(json.dumps(value)) if value else None

    def decrypt_json(self, value: str | None) -> dict[str, Any]:
        plain = self.decrypt(value)
        return json.loads(plain) if plain else {}
