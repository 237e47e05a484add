# The Execution API versions a client of this build speaks, oldest first. The header carries one.
EXECUTION_API_VERSION_HEADER = "Airlock-API-Version"
EXECUTION_API_VERSIONS = ("2026-11-21", "2026-12-01", "2026-12-15", "2027-01-05")
LATEST_EXECUTION_API_VERSION = EXECUTION_API_VERSIONS[-1]
