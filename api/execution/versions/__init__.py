"""Execution API versions, one module per date. A released version's module is never edited."""

from cadwyn import HeadVersion, Version, VersionBundle

from airlock.version import EXECUTION_API_VERSIONS

# Newest first, as Cadwyn expects. Each later date brings its VersionChange classes along.
bundle = VersionBundle(HeadVersion(), *(Version(date) for date in reversed(EXECUTION_API_VERSIONS)))
