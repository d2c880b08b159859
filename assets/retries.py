"""Retries with exponential backoff for steps that read or write files, on transient I/O errors only.

A network file system or object-store mount can fail a read for a moment (EIO, a timeout, a reset
connection); retrying the step then succeeds. A missing or unreadable file, a corrupt raster or a
bad trial table is not transient: those fail at once, with their own message, instead of after
minutes of retries.
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

MAX_RETRIES = 3
FIRST_WAIT_SECONDS = 2.0
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(error: BaseException) -> bool:
    """An ``OSError`` (connection, timeout, EIO) that a second attempt may not meet."""
    return isinstance(error, OSError) and not isinstance(error, PERMANENT)


@contextlib.contextmanager
def retry_transient_io(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Run an asset's body; a transient I/O error asks Dagster to retry the step after
    2, 4, 8 seconds (``context.retry_number`` counts the attempts), anything else fails it."""
    try:
        yield
    except Exception as error:
        if not is_transient(error):
            raise
        wait = FIRST_WAIT_SECONDS * 2**context.retry_number
        context.log.warning(f"transient I/O error ({error}); retrying in {wait:.0f} s")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from error
