"""2027-01-05: a triggerer posts its triggers' events together, and learns which triggers to stop.

``POST /triggers/events`` takes the events of many triggers the caller holds, each with its last log
lines, with the triggerer's own credential, in one transaction, and answers each event's status.

``POST /triggers/held``: every job heartbeat interval a triggerer sends the ids of the triggers it
runs and is told those that ended, moved to another job or are gone; it then asks Temporal about each
at once, whose answer cancels the run.

Until then a cancellation reached a waiting trigger only with its own frequent heartbeat to Temporal;
triggerers now heartbeat each trigger rarely, and the API hands a silent triggerer's triggers over.
"""

from cadwyn import VersionChange, endpoint


class BatchedEventsAndHeldTriggers(VersionChange):
    description = __doc__ or ""
    instructions_to_migrate_to_previous_version = (
        endpoint("/triggers/events", ["POST"]).didnt_exist,
        endpoint("/triggers/held", ["POST"]).didnt_exist,
    )
