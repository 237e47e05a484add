"""AES-GCM payload codec: every payload (inputs, results, failures) is encrypted before Temporal sees it.

Each encrypted payload names the key that sealed it, so keys can be rotated: new payloads use the
current key, old payloads decode as long as their key is still listed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
_NONCE_BYTES = 12


def generate_key() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def decode_key(value: str) -> bytes:
    key = base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))
    if len(key) != 32:
        raise ValueError("a payload key must be 32 bytes, base64url-encoded")
    return key


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_id: str, keys: Mapping[str, bytes]) -> None:
        if key_id not in keys:
            raise ValueError(f"payload key id {key_id!r} has no key")
        self._key_id = key_id
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, "encryption-key-id": self._key_id.encode()},
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get("encryption-key-id", b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(f"payload was encrypted with unknown key id {key_id!r}")
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        return Payload.FromString(cipher.decrypt(nonce, sealed, None))


def make_codec(key_id: str, key: str, old_keys: Iterable[tuple[str, str]] = ()) -> EncryptionCodec:
    keys = {kid: decode_key(value) for kid, value in old_keys}
    keys[key_id] = decode_key(key)
    return EncryptionCodec(key_id, keys)


def make_data_converter(codec: PayloadCodec) -> DataConverter:
    # Failure messages and stack traces can carry driver output: encode them as well.
    return DataConverter(
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
