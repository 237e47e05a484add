class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Unprocessable(ServiceError):
    status_code = 422


class Unavailable(ServiceError):
    status_code = 503


class TooManyRequests(ServiceError):
    """A cap on waiting work is reached: nothing was stored; the client may retry after a while."""

    status_code = 429
    retry_after_seconds = 30
