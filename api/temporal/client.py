"""The API's Temporal client: connects, registers search attributes, starts test workflows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from airlock import search_attributes as sa
from airlock.codec import make_data_converter
from airlock.protocol import (
    KIND_CONNECTION_TEST,
    KIND_TRIGGER,
    SLOT_GRANTED_SIGNAL,
    connection_test_workflow_id,
    trigger_workflow_id,
)
from airlock.secrets import scrub
from airlock.states import ConnectionTestState
from airlock.summaries import (
    connection_test_details,
    connection_test_summary,
    trigger_details,
    trigger_summary,
)
from airlock.temporal_client import connect_temporal
from airlock.workloads import ConnectionTestInput, TriggerInput
from api.core.config import Settings
from api.core.security import workflow_grant
from api.db.models import ConnectionTest, Trigger
from api.temporal.background import spawn
from workflows.connection_test import ConnectionTestWorkflow
from workflows.trigger import TriggerWorkflow

log = structlog.get_logger(__name__)


async def connect(settings: Settings) -> Client:
    return await connect_temporal(settings, make_data_converter(settings.codec()))


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the search attributes a cluster lacks (the dev server gets them by flag). Where the
    operator API is not this client's to call (Temporal Cloud manages search attributes itself), say
    which ones the namespace needs and go on."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
            for key in sa.ALL
            if key.name not in existing.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
    except RPCError as exc:
        if exc.status not in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise
        log.warning(
            "cannot check the namespace's search attributes: create them as Keyword if it lacks any",
            names=[key.name for key in sa.ALL],
            error=exc.message,
        )


def workflow_input(settings: Settings, test: ConnectionTest) -> ConnectionTestInput:
    return ConnectionTestInput(
        test_id=test.id,
        grant=workflow_grant(settings, connection_test_workflow_id(test.id)),
        record_timeout=settings.reaper_grace + settings.connection_test_timeout,
    )


def _shown(text: str, secrets: Sequence[str]) -> str:
    # Summaries are built from fields that hold no secret; a password typed into the host field is
    # still not shown.
    return scrub(text, *secrets)


async def start_connection_test(
    client: Client, settings: Settings, test: ConnectionTest, *, secrets: Sequence[str] = ()
) -> None:
    """Start the test's workflow. ``secrets``: the connection's, kept
    out of the workflow's summary and details (the Temporal UI shows them)."""
    workflow_id = connection_test_workflow_id(test.id)
    attributes: list[SearchAttributePair[str]] = [
        SearchAttributePair(sa.KIND, KIND_CONNECTION_TEST),
        SearchAttributePair(sa.QUEUE, test.queue),
        SearchAttributePair(sa.STATE, ConnectionTestState.PENDING.value),
    ]
    if test.connection_id:
        attributes.append(SearchAttributePair(sa.CONNECTION_ID, test.connection_id))
    await client.start_workflow(
        ConnectionTestWorkflow.run,
        workflow_input(settings, test),
        id=workflow_id,
        task_queue=settings.control_queue,
        search_attributes=TypedSearchAttributes(attributes),
        # Waiting for a slot may be long; nothing waits forever.
        execution_timeout=timedelta(hours=6),
        request_eager_start=True,
        static_summary=_shown(
            connection_test_summary(test.conn_type, test.host, test.port, test.queue), secrets
        ),
        static_details=_shown(
            connection_test_details(
                test_id=test.id,
                conn_type=test.conn_type,
                host=test.host,
                port=test.port,
                queue=test.queue,
                connection_id=test.connection_id,
                timeout=test.timeout,
            ),
            secrets,
        ),
    )


def wake_slot_holders(client: Client | None, test_ids: Sequence[str]) -> None:
    """Tell the workflows of tests that were just granted a slot to ask for it again, without waiting
    for the signals: a lost one costs that test a recheck interval, not its slot."""
    if client is None:
        return
    for test_id in test_ids:
        spawn(_wake(client, test_id))


async def _wake(client: Client, test_id: str) -> None:
    try:
        await client.get_workflow_handle(connection_test_workflow_id(test_id)).signal(SLOT_GRANTED_SIGNAL)
    except RPCError as exc:
        log.info(
            "could not nudge a test granted a slot; it asks again itself", test_id=test_id, error=exc.message
        )


async def start_trigger(
    client: Client, settings: Settings, trigger: Trigger, fire_at: datetime | None
) -> None:
    """Start the trigger's workflow; its summary names the classpath and queue, never its kwargs."""
    inp = TriggerInput(
        trigger_id=trigger.id,
        grant=workflow_grant(settings, trigger_workflow_id(trigger.id)),
        fire_at=fire_at.isoformat() if fire_at else None,
        timeout_at=trigger.timeout_at.isoformat() if trigger.timeout_at else None,
    )
    await client.start_workflow(
        TriggerWorkflow.run,
        inp,
        id=trigger_workflow_id(trigger.id),
        # Its first workflow task runs in this process's own control worker, without a trip through
        # matching.
        request_eager_start=True,
        static_summary=trigger_summary(trigger.classpath, trigger.queue, inp.fire_at),
        static_details=trigger_details(
            trigger_id=trigger.id,
            classpath=trigger.classpath,
            queue=trigger.queue,
            fire_at=inp.fire_at,
            timeout_at=inp.timeout_at,
        ),
        task_queue=settings.control_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.KIND, KIND_TRIGGER),
                SearchAttributePair(sa.QUEUE, trigger.queue),
                SearchAttributePair(sa.CLASSPATH, trigger.classpath[:250]),
                SearchAttributePair(sa.STATE, trigger.state),
            ]
        ),
    )


async def cancel_trigger(client: Client, trigger_id: str) -> None:
    try:
        await client.get_workflow_handle(trigger_workflow_id(trigger_id)).cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
