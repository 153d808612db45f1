"""Errors with TF Serving's status codes, and how REST and gRPC show them."""

import logging

LOG = logging.getLogger("tffm.serve")

# TF Serving's `ToHTTPStatusCode` (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A request failed with a TF Serving status code and message.

    Args:
        code: str. A `tensorflow.error.Code` name, e.g. `"NOT_FOUND"`.
        message: str. What went wrong, worded as TF Serving words it.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(
                f"`code` must be one of {sorted(HTTP_STATUS)}. "
                f"Received: code={code!r}"
            )
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> ServingError:
    """An INVALID_ARGUMENT error (HTTP 400)."""
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    """A NOT_FOUND error (HTTP 404)."""
    return ServingError("NOT_FOUND", message)


def as_serving_error(error: Exception) -> ServingError:
    """`error` itself, or INTERNAL (logged) for an unexpected one."""
    if isinstance(error, ServingError):
        return error
    LOG.error("gRPC call failed", exc_info=error)
    return ServingError(
        "INTERNAL", f"Internal: {type(error).__name__}: {error}"
    )
