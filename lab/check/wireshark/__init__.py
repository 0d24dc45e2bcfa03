"""The Wireshark Lua dissector for the DSR option, shipped as package data.

``dsr_option.lua`` (beside this file) is a post-dissector: it finds the
IPv4 DSR option (type 0x9a, length 8) in every IPv4 header, including ones
quoted in ICMP errors, the IPv6 DSR Destination Option (0x1b, length 20) and
Cilium's Geneve option (class 0x014b, type 0x81, Geneve dispatch), and shows
it as the service address and port (``DSR [200::]:80`` in the Info column), with
filterable fields (``dsropt.service.ip == 172.18.0.2``, ``dsropt``; see
:data:`FIELDS`). The protocol is named ``dsropt`` because Wireshark already
has a ``dsr`` (Dynamic Source Routing).

Loading it: ``tshark -X lua_script:PATH`` (also ``wireshark``), or a copy
in the personal Lua plugins folder (``tshark -G folders``). As root,
Wireshark runs user Lua scripts only if its global ``init.lua`` sets
``run_user_scripts_when_superuser = true`` (Debian 12's 4.0 does); with
``false`` tshark ignores ``-X lua_script`` silently and the filter fails
with "dsropt is neither a field nor a protocol name".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lab.atomic import copy_file
from lab.errors import LabError

LUA_NAME = "dsr_option.lua"
PROTO = "dsropt"
FIELDS: dict[str, str] = {
    "dsropt": "the DSR option is present (at any position)",
    "dsropt.service": 'the service as "ip:port" (the plausible byte order, or the forced one)',
    "dsropt.service.ip": "the service address (IPv4)",
    "dsropt.service.port": "the service port",
    "dsropt.order": '"host" (byte-swapped, as Cilium 1.13-1.15 writes it) or "network"',
    "dsropt.alt.service": "the other reading, ip:port (also .alt.ip, .alt.port, .alt.order)",
    "dsropt.first": "true if it is the first IPv4 option (the only one a backend reads)",
    "dsropt.raw": "the 8 option bytes (the IPv6 option's, the Geneve option's)",
    "dsropt.service.ipv6": "the service address (IPv6: the 0x1b option, IPv6 in Geneve)",
    "dsropt.dispatch": '"opt" (an IP option, 0x9a or IPv6 0x1b) or "geneve"',
    "dsropt.family": "4 or 6, the service address's family",
}
ORDER_PREF = "dsropt.order"  # -o dsropt.order:auto|host|network
DEFAULT_TIMEOUT_S = 30.0


class WiresharkError(LabError, RuntimeError):
    """tshark missing or failing."""


def lua_path() -> Path:
    """Where the installed ``dsr_option.lua`` is (a real file inside the package)."""
    p = Path(str(resources.files(__package__ or "lab.check.wireshark").joinpath(LUA_NAME)))
    if not p.is_file():
        raise WiresharkError(f"{p}: the Lua dissector is missing from the installed package")
    return p


def lua_flag(path: Path | None = None) -> str:
    """The ``-X`` argument that loads the dissector into tshark or wireshark."""
    return f"lua_script:{path or lua_path()}"


def tshark_argv(pcap: str | Path, *extra: str, tshark: str = "tshark",
                path: Path | None = None) -> list[str]:
    """``tshark -X lua_script:... -r PCAP EXTRA...``."""
    return [tshark, "-X", lua_flag(path), "-r", str(pcap), *extra]


def _run(argv: list[str], timeout: float = DEFAULT_TIMEOUT_S,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise WiresharkError(f"{argv[0]} not found on PATH (Debian: apt-get install tshark)")
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, env=env)
    except subprocess.TimeoutExpired:
        raise WiresharkError(f"{' '.join(argv)} took more than {timeout:.0f}s") from None


@dataclass(frozen=True)
class TsharkInfo:
    """What ``tshark -v`` and ``tshark -G folders`` say about Lua support."""

    version: str
    lua: str | None  # "Lua 5.2.4", or None if built without Lua
    folders: dict[str, str]
    init_lua: Path | None
    enable_lua: bool | None  # init.lua's enable_lua (None: not found)
    run_as_superuser: bool | None  # init.lua's run_user_scripts_when_superuser

    @property
    def personal_lua_dir(self) -> Path:
        d = self.folders.get("Personal Lua Plugins")
        return Path(d) if d else Path.home() / ".local" / "lib" / "wireshark" / "plugins"

    @property
    def blocked_for_root(self) -> bool:
        """True if running as root here keeps user scripts from loading."""
        return os.geteuid() == 0 and self.run_as_superuser is False


def _init_setting(text: str, name: str) -> bool | None:
    found = re.findall(rf"^\s*{name}\s*=\s*(true|false)\b", text, re.MULTILINE)
    return None if not found else found[-1] == "true"  # the last assignment wins


def tshark_info(tshark: str = "tshark", env: dict[str, str] | None = None) -> TsharkInfo:
    """Ask tshark for its version, Lua support and plugin folders."""
    v = _run([tshark, "-v"], env=env)
    text = " ".join(v.stdout.split())
    first = v.stdout.splitlines()[0] if v.stdout else ""
    lua = re.search(r"with (Lua [0-9.]+)", text)
    folders: dict[str, str] = {}
    g = _run([tshark, "-G", "folders"], env=env)
    for line in g.stdout.splitlines():
        key, sep, val = line.partition(":")
        if sep and val.strip():
            folders.setdefault(key.strip(), val.strip())
    init: Path | None = None
    enable = superuser = None
    glob_dir = folders.get("Global configuration")
    if glob_dir and (Path(glob_dir) / "init.lua").is_file():
        init = Path(glob_dir) / "init.lua"
        body = init.read_text(errors="replace")
        enable = _init_setting(body, "enable_lua")
        if enable is None:  # Wireshark < 3.6 spelled it the other way round
            disable = _init_setting(body, "disable_lua")
            enable = None if disable is None else not disable
        superuser = _init_setting(body, "run_user_scripts_when_superuser")
    return TsharkInfo(version=first.strip().rstrip("."), lua=lua[1] if lua else None,
                      folders=folders, init_lua=init, enable_lua=enable,
                      run_as_superuser=superuser)


def check_loads(tshark: str = "tshark", path: Path | None = None,
                env: dict[str, str] | None = None) -> list[str]:
    """The ``dsropt.*`` fields tshark knows with the script loaded (empty: not loaded)."""
    out = _run([tshark, "-G", "fields", "-X", lua_flag(path)], env=env)  # -G must come first
    if out.returncode != 0 or "Lua: Error" in out.stderr:
        raise WiresharkError(f"tshark could not load {path or lua_path()}: "
                             f"{out.stderr.strip()}")
    fields = []
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) > 2 and (cols[2] == PROTO or cols[2].startswith(PROTO + ".")):
            fields.append(cols[2])
    return fields


def install(dest_dir: Path) -> Path:
    """Copy the dissector into ``dest_dir`` (the personal Lua plugins folder).

    The copy is written beside its place under a temporary name and renamed over
    it: whatever was there is replaced, never written through. A symbolic link
    there is replaced by the file and its target left untouched; a directory in
    the way is refused (:class:`WiresharkError`); a failed write is the
    :class:`~lab.atomic.OutputError` naming the file.
    """
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WiresharkError(f"{dest_dir}: cannot create the plugins folder: "
                             f"{exc.strerror or exc}") from None
    dest = dest_dir / LUA_NAME
    if dest.is_dir() and not dest.is_symlink():
        raise WiresharkError(f"{dest}: a directory is in the way; remove it to install")
    copy_file(lua_path(), dest)  # beside it, renamed over it: a link is replaced, not followed
    return dest
