"""Files of the state directory: owner-only, whatever the umask.

The spool, the checkpoints and the anomaly models hold (or are made from) every
container's log lines, which Docker keeps in a 0710 directory: the shipper must not
let more users read them. Directories are created 0700 and files 0600 by the call
that creates them (never chmod after), so nothing is readable by others even for a
moment; what an older version left wider is tightened, with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, Problem

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
# What the shipper keeps in its state directory: a directory holding anything else is not
# its own, and is never re-permissioned (state.directory=/var/lib would break the host).
# shipper.log: where scripts/run.sh sends the shipper's own log
OWN_ENTRIES = frozenset({"lock", "spool", "models", "checkpoints.json", "checkpoints.tmp", "audit-settings.json",
                         "shipper.log"})
_FLAGS = {
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}


def open_private(path: str | os.PathLike[str], mode: str = "wb") -> IO[Any]:
    """Open `path` for writing as a 0600 file ("wb", "w" or "a+"); an existing wider file is narrowed."""
    fd = os.open(path, _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~FILE_MODE:
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` as a 0700 directory: missing components made 0700, an existing wider one narrowed with a warning.

    A symlink is followed: what is narrowed is the directory it names.
    """
    path = Path(path).resolve()
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made by another thread or process meanwhile
            pass
    before = stat.S_IMODE(path.stat().st_mode)
    if _narrow(path, DIR_MODE):
        log.warning("state directory: %s was mode %04o (readable by others); narrowed to 0700", path, before)
    return path


def prepare_state_directory(directory: str | os.PathLike[str]) -> Path:
    """The state directory made or checked: 0700, and everything in it 0600 (directories 0700).

    Raises a ConfigError naming state.directory when it cannot be used.
    """
    path = Path(directory)

    def unusable(why: str) -> ConfigError:
        return ConfigError([Problem(f"state.directory {path}", "", f"{why}; set state.directory to a directory "
                                    "of the shipper's own that this user can create and write")])

    try:
        if path.exists() and not path.is_dir():
            raise unusable("exists and is not a directory")
        if path.is_dir():
            _check_own(path, unusable)
        narrowed = _narrow_tree(private_dir(path))
        open_private(path / "lock", "a+").close()  # proves we can write there
    except OSError as exc:
        raise unusable(f"cannot create or write it ({exc.strerror or exc})") from None
    if narrowed:
        log.warning("state directory: %d files or directories in it were readable by others; narrowed to "
                    "owner-only", narrowed, extra={"directory": str(path)})
    return path


def _check_own(path: Path, unusable: Callable[[str], ConfigError]) -> None:
    """Refuse to narrow a directory that is not the shipper's own (state.directory=/var/lib would break the host)."""
    info = path.stat()
    if not stat.S_IMODE(info.st_mode) & ~DIR_MODE:
        return
    foreign = sorted(name for name in os.listdir(path) if name not in OWN_ENTRIES and not name.endswith(".tmp"))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise unusable(f"is readable by others (mode {stat.S_IMODE(info.st_mode):04o}) and holds what is not "
                       f"the shipper's ({shown}), so it will not be narrowed to 0700")
    if info.st_uid != os.geteuid():
        raise unusable(f"is readable by others (mode {stat.S_IMODE(info.st_mode):04o}) and belongs to uid "
                       f"{info.st_uid}, so it will not be narrowed to 0700")


def _narrow(path: Path, mode: int) -> bool:
    """chmod `path` to `mode` if it allows more; whether it did. Symlinks are left alone."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & ~mode:
        return False
    os.chmod(path, mode)
    return True


def _narrow_tree(root: Path) -> int:
    """Narrow everything under `root` (what an older version or a looser umask made); how many entries."""
    count = 0
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            count += _narrow(Path(directory, name), DIR_MODE)
        for name in files:
            count += _narrow(Path(directory, name), FILE_MODE)
    return count
