"""What the repository's ``captures/`` looks like, to prove a test session left it alone.

:func:`snapshot` records every entry under ``captures/`` (not following
links): directories with their mtime, files with size and mtime, links
(``latest``) with their target. ``None`` when there is no ``captures/``:
then there must still be none afterwards. Equal snapshots: nothing was
added, removed, rewritten or re-pointed.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"

Entry = tuple[str, str, int, str]  # relative path, kind, size or 0, mtime or link target
Snapshot = tuple[Entry, ...] | None


def snapshot(root: Path = CAPTURES) -> Snapshot:
    if not root.exists() and not root.is_symlink():
        return None
    entries: list[Entry] = [(".", "dir", 0, str(root.lstat().st_mtime_ns))]
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                entries.append((rel, "link", 0, os.readlink(path)))
            elif path.is_dir():
                entries.append((rel, "dir", 0, str(st.st_mtime_ns)))
            else:
                entries.append((rel, "file", st.st_size, str(st.st_mtime_ns)))
    return tuple(sorted(entries))


def describe_change(before: Snapshot, after: Snapshot, root: Path = CAPTURES) -> list[str]:
    """What differs, one line each (empty: nothing)."""
    if before == after:
        return []
    if before is None:
        return [f"{root} was created"]
    if after is None:
        return [f"{root} was removed"]
    old, new = {e[0]: e for e in before}, {e[0]: e for e in after}
    lines = [f"added {root / k}" for k in sorted(new.keys() - old.keys())]
    lines += [f"removed {root / k}" for k in sorted(old.keys() - new.keys())]
    lines += [f"changed {root / k}: {old[k][1:]} -> {new[k][1:]}"
              for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    return lines
