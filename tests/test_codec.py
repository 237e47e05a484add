"""The payload codec: one key per segment, derived from the API's master key; contexts enforced."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from airlock.codec import (
    CONTROL,
    DerivedKeyring,
    EncryptionCodec,
    MasterKeyring,
    PayloadRefused,
    decode_key,
    generate_key,
    master_codec,
    queue_purpose,
    refusal,
)

CONTROL_QUEUE = "airlock-control"


def _activity(queue: str) -> ActivitySerializationContext:
    return ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="run_connection_test",
        activity_task_queue=queue,
        workflow_id="connection-test-x",
        workflow_type="ConnectionTestWorkflow",
        is_local=False,
    )


WORKFLOW = WorkflowSerializationContext(namespace="default", workflow_id="connection-test-x")
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"test_id": "x"}')


def _worker_codec(master: str, queues: list[str], key_id: str = "k1") -> EncryptionCodec:
    keys = MasterKeyring(key_id, {key_id: decode_key(master)}).derived(queue_purpose(q) for q in queues)
    return EncryptionCodec(DerivedKeyring(key_id, keys))


async def test_each_queue_is_sealed_with_its_own_key_and_a_worker_opens_only_its_own() -> None:
    master = generate_key()
    api = master_codec("k1", master, control_queue=CONTROL_QUEUE)
    [net_a] = await api.with_context(_activity("net-a")).encode([PLAIN])
    [net_b] = await api.with_context(_activity("net-b")).encode([PLAIN])
    [control] = await api.with_context(WORKFLOW).encode([PLAIN])
    assert net_a.metadata["encryption-purpose"] == b"queue:net-a"
    assert control.metadata["encryption-purpose"] == CONTROL.encode()
    assert PLAIN.data not in net_a.data + net_b.data + control.data

    worker_a = _worker_codec(master, ["net-a"])
    assert await worker_a.with_context(_activity("net-a")).decode([net_a]) == [PLAIN]
    for sealed in (net_b, control):
        [refused] = await worker_a.decode([sealed])
        assert refusal(refused) and PLAIN.data not in refused.SerializeToString()
    # It can seal its results for its own queue only; nothing for the control plane.
    with pytest.raises(PayloadRefused):
        await worker_a.with_context(_activity("net-b")).encode([PLAIN])
    with pytest.raises(PayloadRefused):
        await worker_a.with_context(WORKFLOW).encode([PLAIN])


async def test_a_payload_sealed_for_one_purpose_is_refused_where_another_is_expected() -> None:
    """A worker's own queue key cannot pass for control-plane input, even to the API, which holds it."""
    master = generate_key()
    api = master_codec("k1", master, control_queue=CONTROL_QUEUE)
    [sealed_by_worker] = await _worker_codec(master, ["net-a"]).with_context(_activity("net-a")).encode([PLAIN])
    [refused] = await api.with_context(WORKFLOW).decode([sealed_by_worker])
    assert refusal(refused) == "payload sealed for 'queue:net-a' where 'control' is expected"
    [refused] = await api.with_context(_activity("net-b")).decode([sealed_by_worker])
    assert refusal(refused)
    # Without a context (the operators' codec endpoint) the API opens any of them.
    assert await api.decode([sealed_by_worker]) == [PLAIN]
    assert await api.with_context(_activity("net-a")).decode([sealed_by_worker]) == [PLAIN]


async def test_unencrypted_payloads_are_refused() -> None:
    api = master_codec("k1", generate_key(), control_queue=CONTROL_QUEUE)
    for codec in (api, api.with_context(WORKFLOW)):
        [refused] = await codec.decode([PLAIN])
        assert refusal(refused) == "refusing an unencrypted payload"


async def test_a_tampered_purpose_does_not_decrypt() -> None:
    """The purpose is bound to the ciphertext: relabelling a payload does not open it elsewhere."""
    master = generate_key()
    api = master_codec("k1", master, control_queue=CONTROL_QUEUE)
    [sealed] = await api.with_context(_activity("net-a")).encode([PLAIN])
    sealed.metadata["encryption-purpose"] = b"control"
    [refused] = await api.with_context(WORKFLOW).decode([sealed])
    assert refusal(refused) == "the payload does not authenticate under its key"


async def test_keys_rotate_without_losing_what_is_in_flight() -> None:
    """New key current, old one kept: payloads sealed before still open, new ones use the new key, and
    a worker provisioned with both keys (before the switch) opens both."""
    old, new = generate_key(), generate_key()
    before = master_codec("k1", old, control_queue=CONTROL_QUEUE)
    [in_flight] = await before.with_context(_activity("net-a")).encode([PLAIN])

    after = master_codec("k2", new, [("k1", old)], control_queue=CONTROL_QUEUE)
    [fresh] = await after.with_context(_activity("net-a")).encode([PLAIN])
    assert fresh.metadata["encryption-key-id"] == b"k2"
    assert await after.decode([in_flight]) == [PLAIN]

    keys = MasterKeyring("k1", {"k1": decode_key(old), "k2": decode_key(new)}).derived([queue_purpose("net-a")])
    worker = EncryptionCodec(DerivedKeyring("k1", keys)).with_context(_activity("net-a"))
    assert await worker.decode([in_flight, fresh]) == [PLAIN, PLAIN]
    # What it seals with its (older) current key, the API still opens.
    [result] = await worker.encode([PLAIN])
    assert await after.with_context(_activity("net-a")).decode([result]) == [PLAIN]
