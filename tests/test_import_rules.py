"""Which rooms may import which (docs/architecture.md): read from every module's imports with `ast`.

- `protocol/` is the wire contract: it imports nothing of ours and no MQTT client (the keypad, the center
  and any future service must be able to use it alone).
- `center/` and `provisioning/` speak the protocol; they never import the terminal (`device`) or its views.
- `devkit/` (what tests, bench and `make run` share) may use the rooms it runs; no room imports it, only
  tests/ and bench/; bench never imports tests.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("protocol", "device", "ui", "drivers", "center", "provisioning", "bench", "tests", "tools", "settings", "configuration",
        "keypad", "devkit")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function bodies and TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the rooms use absolute imports only)"
            found.add(node.module or "")
    return found


def room_files(room: str) -> list[Path]:
    return sorted(p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)


def top(module: str) -> str:
    return module.split(".")[0]


def violations(room: str, forbidden: set[str]) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {m}" for p in room_files(room) for m in sorted(imported_modules(p))
            if top(m) in forbidden]


def test_the_rules_see_every_room() -> None:
    for room in ("protocol", "center", "provisioning"):
        assert room_files(room), f"{room}/ has no Python files: the rules below would pass vacuously"


def test_protocol_imports_nothing_of_ours_and_no_mqtt_client() -> None:
    assert violations("protocol", set(OURS) - {"protocol"} | {"paho"}) == []


@pytest.mark.parametrize("room", ["center", "provisioning"])
def test_center_side_never_imports_the_terminal(room: str) -> None:
    assert violations(room, {"device", "ui", "drivers"}) == []


# The development kit may import the rooms it runs together (the demo also `ui`, to choose its view).
DEVKIT_MAY_IMPORT = {"devkit", "protocol", "device", "center", "provisioning", "configuration"}
DEVKIT_DEMO_ALSO = {"ui"}


def test_devkit_imports_only_the_rooms_it_runs() -> None:
    assert room_files("devkit")
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in room_files("devkit") for m in sorted(imported_modules(p))
           if top(m) in OURS and top(m) not in DEVKIT_MAY_IMPORT | (DEVKIT_DEMO_ALSO if p.name == "demo.py" else set())]
    assert bad == []


@pytest.mark.parametrize("room", ["protocol", "device", "ui", "drivers", "center", "provisioning", "configuration",
                                  "keypad"])
def test_no_room_imports_the_devkit(room: str) -> None:
    """Only tests/ and bench/ (and the kit itself) use the kit: nothing shipped depends on it."""
    assert room_files(room)
    assert violations(room, {"devkit"}) == []


def test_bench_never_imports_the_tests() -> None:
    assert room_files("bench")
    assert violations("bench", {"tests"}) == []


def test_importing_every_protocol_module_loads_nothing_of_ours_and_no_paho() -> None:
    """At run time too (a transitive import the `ast` reading would not follow): a fresh interpreter."""
    modules = sorted(p.stem for p in room_files("protocol") if p.stem != "__init__")
    probe = (f"import sys; import {', '.join('protocol.' + m for m in modules)}; "
             f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert loaded & (set(OURS) - {"protocol"} | {"paho"}) == set()


# ---- the views see only the core's port ------------------------------------------------------------------

# `device.port` (the Snapshot and what views may call) and the vocabulary it speaks: states and events,
# the values they carry, the QR matrix. Never the terminal, its outbox, link, config or account.
PORT = {"device.port", "device.machine", "device.model", "device.qr"}
# Command lines compose a terminal (through the one composition root) or load a configuration.
ENTRY_POINTS = {"ui/__main__.py": {"device.config", "device.identity", "device.root", "device.__main__"},
                "drivers/selftest.py": {"device.config"}}


def device_modules(path: Path) -> set[str]:
    """The `device` modules a file imports, `from device import x` read as `device.x`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if top(a.name) == "device")
        elif isinstance(node, ast.ImportFrom) and node.module == "device":
            found.update(f"device.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and top(node.module or "") == "device":
            found.add(node.module)
    return found


@pytest.mark.parametrize("room", ["ui", "drivers", "device/console.py"])
def test_views_import_only_the_cores_public_port(room: str) -> None:
    files = [ROOT / room] if room.endswith(".py") else room_files(room)
    assert files
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in files for m in sorted(device_modules(p))
           if m not in PORT | ENTRY_POINTS.get(str(p.relative_to(ROOT)), set())]
    assert bad == []


def test_the_checker_finds_imports_in_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from device.model import Case\n"
                 "def g():\n    import paho.mqtt.client as mqtt\n    from device import link\n", "utf-8")
    assert imported_modules(f) == {"typing", "device.model", "paho.mqtt.client", "device"}


def test_a_terminal_configured_by_hand_loads_no_cryptography(tmp_path):
    """Only enrolment needs X25519 and ChaCha20 (≈ 8 MB of RSS on a 512 MB board): loaded when enrolled."""
    script = (
        "import sys\n"
        "from device import config\n"
        "from device.terminal import Terminal\n"
        "import device.__main__, device.root, ui.config, drivers.config\n"
        f"cfg = config.load([], {{'HCP_DEVICE_DATA_DIR': {str(tmp_path)!r}, 'HCP_QR_DEMO': 'true'}})\n"
        "t = Terminal(cfg, 'hand1')\n"
        "t.outbox.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography'))[:3])\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
