"""``dsrlab wireshark``: how to load the DSR option dissector (lab.check.wireshark)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.output import console, fail, note

if TYPE_CHECKING:
    from lab.check.wireshark import TsharkInfo


def wireshark(
    check: Annotated[bool, typer.Option(
        "--check", help="load the script into tshark and list the fields it adds")] = False,
    install_it: Annotated[bool, typer.Option(
        "--install", help="copy the script into the personal Lua plugins folder")] = False,
    path_only: Annotated[bool, typer.Option(
        "--path", help="print only the installed .lua path")] = False,
) -> None:
    """How to load the DSR option dissector into Wireshark or tshark."""
    from lab.check import wireshark as ws

    try:
        lua = ws.lua_path()
    except ws.WiresharkError as exc:
        fail(str(exc))
    if path_only:
        sys.stdout.write(f"{lua}\n")
        return
    info: TsharkInfo | None
    try:
        info = ws.tshark_info()
    except ws.WiresharkError as exc:
        info = None
        note("note", str(exc))
    personal = info.personal_lua_dir if info else (
        Path.home() / ".local" / "lib" / "wireshark" / "plugins")
    _print_howto(lua, personal)
    if info is not None:
        _print_tshark(info)
    if install_it:
        try:
            dest = ws.install(personal)
        except (ws.WiresharkError, OSError) as exc:
            fail(str(exc))
        _say(f"installed:      {dest}")
    if check and not _check():
        raise typer.Exit(1)


def _say(line: str) -> None:
    console.print(line, markup=False)


def _print_howto(lua: Path, personal: Path) -> None:
    from lab.check import wireshark as ws

    _say(f"Lua dissector:  {lua}")
    _say(f"tshark:         tshark -X {ws.lua_flag(lua)} -r FILE.pcap -Y dsropt")
    _say("                tshark -X ... -r FILE.pcap -Y 'dsropt.service.ip == 172.18.0.2' "
         "-O dsropt")
    _say(f"Wireshark:      wireshark -X {ws.lua_flag(lua)} FILE.pcap")
    _say(f"for good:       mkdir -p {personal} && cp {lua} {personal}/")
    _say("                (the personal Lua plugins folder: tshark -G folders; "
         "or `dsrlab wireshark --install`)")
    _say(f"byte order:     -o {ws.ORDER_PREF}:auto|host|network (default auto: "
         "the plausible reading; Cilium 1.13-1.15 write host order)")
    _say("fields:")
    for name, what in ws.FIELDS.items():
        _say(f"  {name:<22} {what}")


def _print_tshark(info: TsharkInfo) -> None:
    from rich.text import Text
    lua = Text(f"{info.lua} built in") if info.lua else Text("built without Lua", "red")
    console.print(Text.assemble(f"tshark:         {info.version}; ", lua))
    if info.init_lua is not None:
        _say(f"init.lua:       {info.init_lua}: enable_lua = {_lua_bool(info.enable_lua)}, "
             f"run_user_scripts_when_superuser = {_lua_bool(info.run_as_superuser)}")
    if os.geteuid() != 0:
        return
    if info.blocked_for_root:
        console.print("[red]as root, Wireshark will silently ignore the script[/] "
                      "(run_user_scripts_when_superuser = false): run tshark as "
                      "another user, or set it to true in init.lua")
    else:
        _say("as root:        user Lua scripts run (tshark warns "
             "'Running as user \"root\"', harmless)")


def _check() -> bool:
    """``--check``: tshark loads the script and knows its fields."""
    from rich.text import Text

    from lab.check import wireshark as ws

    try:
        fields = ws.check_loads()
    except ws.WiresharkError as exc:
        fail(str(exc))
    if not fields:
        console.print("[red]check: tshark did not load it[/] (no dsropt fields)")
        return False
    console.print(Text.assemble(("check: tshark loads it", "green"),
                                f" ({len(fields)} dsropt fields: {', '.join(sorted(fields))})"))
    return True


def _lua_bool(v: bool | None) -> str:
    return "not set" if v is None else ("true" if v else "false")
