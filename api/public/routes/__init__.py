from fastapi import APIRouter, Depends

from api.public.routes import connection_tests, connections, jobs, task_instances, triggers, workers
from api.public.security import require_admin

router = APIRouter(
    prefix="/api/v2",
    dependencies=[Depends(require_admin)],
    responses={401: {"description": "missing or invalid API token"}},
)
# /connections/test must come before /connections/{connection_id}.
router.include_router(connection_tests.router)
router.include_router(connections.router)
router.include_router(jobs.router)
router.include_router(triggers.router)
router.include_router(task_instances.router)
router.include_router(workers.router)
