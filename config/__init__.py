"""Files shipped with qloop: the config JSON Schema, the demo and example configs."""

from __future__ import annotations

import importlib.resources
import pathlib


def path(name: str) -> pathlib.Path:
    """The path of a file shipped in the ``config`` package.

    Args:
        name: File name, e.g. ``"sandbox.yaml"`` or ``"qloop.schema.json"``.

    Returns:
        Its path on disk.

    Raises:
        FileNotFoundError: No such file is shipped.
    """
    resource = importlib.resources.files(__name__).joinpath(name)
    if not resource.is_file():
        msg = f"no file {name!r} in the config package"
        raise FileNotFoundError(msg)
    return pathlib.Path(str(resource))
