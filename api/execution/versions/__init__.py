"""Execution API versions, one module per date. A released version's module is never edited."""

from cadwyn import HeadVersion, Version, VersionBundle

from api.execution.versions.v2026_12_01 import AddTriggers
from api.execution.versions.v2026_12_15 import ClaimWithWorkerCredential
from api.execution.versions.v2027_01_05 import BatchedEventsAndHeldTriggers

# Newest first, as Cadwyn expects; each date lists the changes it brought.
bundle = VersionBundle(
    HeadVersion(),
    Version("2027-01-05", BatchedEventsAndHeldTriggers),
    Version("2026-12-15", ClaimWithWorkerCredential),
    Version("2026-12-01", AddTriggers),
    Version("2026-11-21"),
)
