"""Console commands: run the mpsbc and mpsb-dump executables inside the package."""

import os
import sys
from pathlib import Path

BIN = Path(__file__).resolve().parent / "bin"


def tool_path(name: str) -> str:
    """The path of a tool shipped in the package ("mpsbc" or "mpsb-dump")."""
    return str(BIN / name)


def _exec(name: str) -> None:
    path = tool_path(name)
    try:
        os.execv(path, [name] + sys.argv[1:])
    except OSError as e:
        sys.exit("%s: cannot run %s: %s" % (name, path, e.strerror))


def mpsbc() -> None:
    _exec("mpsbc")


def mpsb_dump() -> None:
    _exec("mpsb-dump")
