"""2026-12-15: workloads are claimed with the worker's own credential. A worker claims a connection
test (``POST /connection-tests/{id}/claim``) and a triggerer claims a trigger (``POST
/triggers/{id}/workload``, now with the worker's credential) for a workload on one of its provisioned
queues, and gets a token for that workload that dies when it ends.

Workers pinned to an earlier version cannot run workloads any more: those versions received a workload
token inside the (encrypted) activity input, which no longer carries one.
"""

from cadwyn import VersionChange, endpoint, schema

from airlock.execution import TriggerWorkload


class ClaimWithWorkerCredential(VersionChange):
    description = __doc__ or ""
    instructions_to_migrate_to_previous_version = (
        endpoint("/connection-tests/{test_id}/claim", ["POST"]).didnt_exist,
        schema(TriggerWorkload).field("token").didnt_exist,
    )
