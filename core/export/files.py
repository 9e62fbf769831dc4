"""Export files on disk: whole or not at all.

Each file is written to a hidden temporary file in the target folder and
renamed over its name only when every file of the export is complete, so a
crash, a full disk or Ctrl-C leaves the previous files untouched and no
partial one. The output folder is checked first: a path that is a file, a
folder that cannot be written, or one whose parent does not exist is a
clear error and nothing is written (a missing folder whose parent exists is
created, and removed again if the export fails).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import InputError

TEMP_SUFFIX = ".part"


def _fail(out: Path, why: str) -> InputError:
    return InputError(f"export folder {str(out)!r}: {why}; nothing was written", field="--out")


def prepare_folder(out: Path) -> bool:
    """Check ``out`` can take the export (create it when its parent exists).

    Returns:
        Whether the folder was created here (to remove it if the export fails).

    Raises:
        InputError: ``out`` is a file, cannot be written, or its parent is missing.
    """
    if out.exists() and not out.is_dir():
        raise _fail(out, "is a file, not a folder")
    created = False
    if not out.exists():
        parent = out.parent
        if not parent.is_dir():
            raise _fail(out, f"does not exist, nor does its parent {str(parent)!r}")
        try:
            out.mkdir()
        except OSError as exc:
            raise _fail(out, f"cannot be created ({exc.strerror or exc})") from None
        created = True
    if not os.access(out, os.W_OK | os.X_OK):
        raise _fail(out, "is not writable")
    return created


def _open_temp(path: Path) -> tuple[Path, int]:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    # O_EXCL: never follow or reuse someone else's file; mode 0o666 minus the umask
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def write_files(out: Path, files: Sequence[tuple[str, Iterable[bytes]]]) -> list[Path]:
    """Write each (name, chunks) into ``out`` atomically; returns the paths written.

    Every file goes to a temporary file first; all are renamed into place at
    the end. On any error the temporary files are removed, earlier exports
    stay as they were, and an ``OSError`` becomes an :class:`InputError`
    naming the folder.
    """
    created = prepare_folder(out)
    temps: list[tuple[Path, Path]] = []
    try:
        for name, chunks in files:
            target = out / name
            tmp, fd = _open_temp(target)
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
    except BaseException as exc:
        for _, chunks in files:  # the writers not run to the end hold database cursors
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):
            raise _fail(out, f"cannot be written ({exc.strerror or exc})") from None
        raise
    return [target for _, target in temps]
