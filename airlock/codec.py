"""AES-GCM payload codec with one key per segment: every payload is encrypted before Temporal sees it.

Each payload is sealed with the key of its *purpose*: ``queue:<name>`` for the inputs, results,
heartbeats and failures of activities on that task queue (Temporal's serialization context names
it), ``control`` for everything of the control plane (workflow inputs, results, signals, queries).
Purpose keys are derived from a master key (HKDF-SHA256) that only the API holds; a worker is given
the derived keys of its own queues, so owning one worker opens no other segment's payloads and no
control payload. The purpose is bound to the ciphertext (AES-GCM associated data), and a codec that
knows its context refuses a payload sealed for another purpose: a worker cannot pass its own
queue's ciphertext off as control-plane input.

Each payload names its master key id, so keys rotate: new payloads use the current key, old
payloads decode as long as their key is still listed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

ENCODING = b"binary/encrypted"
# What decode returns in place of a payload it must not open: no converter reads this encoding, so the
# value fails to convert where it is used (a signal is dropped, an activity fails) instead of failing the
# whole workflow task, which would let anyone wedge a workflow with one undecodable signal.
REFUSED_ENCODING = b"binary/refused"
KEY_ID_METADATA = "encryption-key-id"
PURPOSE_METADATA = "encryption-purpose"
CONTROL = "control"
_NONCE_BYTES = 12
_KDF_INFO = b"airlock payload key\x00"


class PayloadRefused(ValueError):
    """A payload this codec must not open: unencrypted, sealed for another purpose, or an unknown key."""


def queue_purpose(queue: str) -> str:
    return f"queue:{queue}"


def key_ref(key_id: str, purpose: str) -> str:
    """How a derived key is named where it is handed out: ``k1/queue:net-a``."""
    return f"{key_id}/{purpose}"


def generate_key() -> str:
    return encode_key(AESGCM.generate_key(bit_length=256))


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(value: str) -> bytes:
    key = base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))
    if len(key) != 32:
        raise ValueError("a payload key must be 32 bytes, base64url-encoded")
    return key


def derive_key(master: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO + purpose.encode())
    return hkdf.derive(master)


class Keyring(Protocol):
    current: str

    def cipher(self, key_id: str, purpose: str) -> AESGCM | None: ...


class MasterKeyring:
    """The API's: master keys by id; the key of any purpose is derived when first needed."""

    def __init__(self, current: str, masters: Mapping[str, bytes]) -> None:
        if current not in masters:
            raise ValueError(f"payload key id {current!r} has no key")
        for key_id in masters:
            _check_key_id(key_id)
        self.current = current
        self._masters = dict(masters)
        self._ciphers: dict[tuple[str, str], AESGCM] = {}

    def cipher(self, key_id: str, purpose: str) -> AESGCM | None:
        master = self._masters.get(key_id)
        if master is None:
            return None
        found = self._ciphers.get((key_id, purpose))
        if found is None:
            found = self._ciphers[(key_id, purpose)] = AESGCM(derive_key(master, purpose))
        return found

    def derived(self, purposes: Iterable[str]) -> dict[str, str]:
        """The keys of ``purposes`` under every master key, as a worker is given them."""
        return {
            key_ref(key_id, purpose): encode_key(derive_key(master, purpose))
            for key_id, master in self._masters.items()
            for purpose in purposes
        }


class DerivedKeyring:
    """A worker's: the derived keys it was given (``{"k1/queue:net-a": key}``) and nothing else."""

    def __init__(self, current: str, keys: Mapping[str, str]) -> None:
        self.current = current
        self._ciphers: dict[tuple[str, str], AESGCM] = {}
        for ref, value in keys.items():
            key_id, sep, purpose = ref.partition("/")
            if not sep or not purpose:
                raise ValueError(f"payload key {ref!r} is not named 'key-id/purpose'")
            self._ciphers[(key_id, purpose)] = AESGCM(decode_key(value))

    def cipher(self, key_id: str, purpose: str) -> AESGCM | None:
        return self._ciphers.get((key_id, purpose))


def purpose_of(context: SerializationContext, control_queue: str | None) -> str | None:
    if isinstance(context, WorkflowSerializationContext):
        return CONTROL
    if isinstance(context, ActivitySerializationContext) and context.activity_task_queue:
        queue = context.activity_task_queue
        return CONTROL if queue == control_queue else queue_purpose(queue)
    return None


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Seals with the purpose the context names; ``default_purpose`` where there is no context (the
    API's own client and codec endpoints: ``control``). Without a context, decode opens any payload
    its keyring can (operators' codec endpoint); with one, only payloads sealed for that purpose."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        control_queue: str | None = None,
        default_purpose: str | None = None,
        purpose: str | None = None,
    ) -> None:
        self._keyring = keyring
        self._control_queue = control_queue
        self._default_purpose = default_purpose
        self._purpose = purpose

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        return EncryptionCodec(
            self._keyring,
            control_queue=self._control_queue,
            default_purpose=self._default_purpose,
            purpose=purpose_of(context, self._control_queue),
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        purpose = self._purpose or self._default_purpose
        if purpose is None:
            raise PayloadRefused("no purpose to seal this payload for (no serialization context)")
        cipher = self._keyring.cipher(self._keyring.current, purpose)
        if cipher is None:
            raise PayloadRefused(f"no key to seal payloads for {purpose!r}")
        return [self._encrypt(cipher, purpose, p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def _open(self, payload: Payload) -> Payload:
        try:
            return self._decrypt(payload)
        except (PayloadRefused, InvalidTag) as exc:
            reason = str(exc) or "the payload does not authenticate under its key"
            return Payload(metadata={"encoding": REFUSED_ENCODING, "refused": reason.encode()})

    def _encrypt(self, cipher: AESGCM, purpose: str, payload: Payload) -> Payload:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cipher.encrypt(nonce, payload.SerializeToString(), purpose.encode())
        return Payload(
            metadata={
                "encoding": ENCODING,
                KEY_ID_METADATA: self._keyring.current.encode(),
                PURPOSE_METADATA: purpose.encode(),
            },
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            raise PayloadRefused("refusing an unencrypted payload")
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        purpose = payload.metadata.get(PURPOSE_METADATA, b"").decode(errors="replace")
        if self._purpose is not None and purpose != self._purpose:
            raise PayloadRefused(f"payload sealed for {purpose!r} where {self._purpose!r} is expected")
        cipher = self._keyring.cipher(key_id, purpose)
        if cipher is None:
            raise PayloadRefused(f"no key {key_id!r} for {purpose!r} payloads here")
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        return Payload.FromString(cipher.decrypt(nonce, sealed, purpose.encode()))


def refusal(payload: Payload) -> str | None:
    """Why decode would not open this payload, or None for an opened one."""
    if payload.metadata.get("encoding") != REFUSED_ENCODING:
        return None
    return payload.metadata.get("refused", b"").decode(errors="replace")


def master_codec(
    key_id: str, key: str, old_keys: Iterable[tuple[str, str]] = (), *, control_queue: str | None = None
) -> EncryptionCodec:
    """The API's codec: every purpose, ``control`` where no context names one."""
    masters = {kid: decode_key(value) for kid, value in old_keys}
    masters[key_id] = decode_key(key)
    return EncryptionCodec(
        MasterKeyring(key_id, masters), control_queue=control_queue, default_purpose=CONTROL
    )


def make_data_converter(codec: PayloadCodec) -> DataConverter:
    # Failure messages and stack traces can carry driver output: encode them as well.
    return DataConverter(
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def _check_key_id(key_id: str) -> None:
    if not key_id or "/" in key_id:
        raise ValueError(f"payload key id {key_id!r} must be non-empty and without '/'")
