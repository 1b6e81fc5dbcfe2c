"""The errors tamer raises for people: one sentence naming the bad value and what is accepted."""
from __future__ import annotations


class TamerError(Exception):
    """Base of every error tamer raises on purpose. The CLI prints it without a traceback."""

    exit_code = 1


class UsageError(TamerError):
    """Bad input from the user: an unknown name, a bad option value, a missing file (exit code 2)."""

    exit_code = 2


class DataError(UsageError):
    """A data file that cannot be read as the task expects (missing columns, empty, wrong format)."""


class ArtifactError(UsageError):
    """An artifact folder that is missing, incomplete or does not match its own hashes."""


class JobFailed(TamerError):
    """A job that started with good input and did not finish (exit code 1)."""


class GateFailed(JobFailed):
    """A recipe gate that a stage's metrics did not pass."""


def refuse_existing(out, what: str = "an artifact", folder: bool = True):
    """`out` as a Path, or a UsageError when something is already there: tamer never overwrites. With `folder`, an
    empty folder counts as free (a user may make it first)."""
    from pathlib import Path

    out = Path(out)
    if out.exists() and (not folder or not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {str(out)!r} already exists; pass a new --out {'folder' if folder else 'path'} "
                         f"(tamer never overwrites {what}).")
    return out
