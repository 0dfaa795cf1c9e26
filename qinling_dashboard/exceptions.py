"""Errors of the function-engine API, as Horizon's exception handling
knows them.

No Django import here: the enabled/ files register these classes with Horizon
(ADD_EXCEPTIONS) while Django's settings are still being read.
"""


class QinlingError(Exception):
    """The API answered an error; message is the server's faultstring."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self):
        return self.message


class QinlingNotFound(QinlingError):
    """404: absent, or another project's."""


class QinlingUnauthorized(QinlingError):
    """401: the user's token was refused; Horizon logs the user out."""


class QinlingRecoverable(QinlingError):
    """Every other 4xx or 5xx: shown to the user as a message."""


def from_status(status, message):
    if status == 404:
        return QinlingNotFound(status, message)
    if status == 401:
        return QinlingUnauthorized(status, message)
    return QinlingRecoverable(status, message)
