"""2026-11-21: the first Execution API. Connection tests (connection fields, state) and worker jobs.

The first version changes nothing; later versions add VersionChange classes in their own modules.
"""
