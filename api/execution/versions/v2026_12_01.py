"""2026-12-01: triggers. Triggerers claim workloads and report events, failures and logs; running tasks
defer through ``PATCH /task-instances/{id}/state``; jobs may be triggerers with a capacity.

Clients pinned to 2026-11-21 see none of it and keep working unchanged.
"""

from typing import Literal

from cadwyn import VersionChange, endpoint, schema

from airlock.execution import JobRegistration

TRIGGER_ROUTES = (
    ("/triggers/{trigger_id}/workload", ["POST"]),
    ("/triggers/{trigger_id}/event", ["POST"]),
    ("/triggers/{trigger_id}/failure", ["POST"]),
    ("/triggers/{trigger_id}/logs", ["POST"]),
    ("/triggers/{trigger_id}/connections/{connection_id}", ["GET"]),
    ("/task-instances/{task_instance_id}/state", ["PATCH"]),
)


class AddTriggers(VersionChange):
    description = __doc__ or ""
    instructions_to_migrate_to_previous_version = (
        *(endpoint(path, methods).didnt_exist for path, methods in TRIGGER_ROUTES),
        schema(JobRegistration).field("capacity").didnt_exist,
        schema(JobRegistration).field("kind").had(type=Literal["worker"]),
    )
