from dataclasses import is_dataclass
from pathlib import Path

from device import config_doc
from provisioning import config_doc as center_doc
from configuration.schema import declared, dotted_keys, item_type

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "configuration.md"


def test_configuration_reference_is_up_to_date():
    """Regenerate with: .venv/bin/python -m device.config_doc > docs/configuration.md"""
    assert DOC.read_text("utf-8") == config_doc.render()


def test_every_key_is_documented():
    text = config_doc.render()
    from dataclasses import fields
    from device.config import Config
    for section in fields(Config):
        for f in fields(section.default_factory()):
            assert f"| `{f.name}` |" in text and f.metadata.get("doc"), f"{section.name}.{f.name}"


def test_center_file_reference_is_up_to_date():
    """Regenerate with: .venv/bin/python -m provisioning.config_doc > docs/center-file.md"""
    assert (DOCS / "center-file.md").read_text("utf-8") == center_doc.render()


def test_every_center_file_key_is_documented():
    from provisioning.config import CenterConfig
    text = center_doc.render()
    keys = dotted_keys(CenterConfig)
    assert {"broker.port", "bridge.protocol", "ledger.db", "window.id", "window.staff.number"} <= set(keys)
    for key in keys:
        table, name = key.rsplit(".", 1)
        heading = f"## [[{table}]]" if table.startswith("window") else f"## [{table}]"
        section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        assert f"| `{name}` |" in section, key
    for cls in _classes(CenterConfig):
        for f, typ in declared(cls):
            assert is_dataclass(typ) or f.metadata.get("doc"), f"{cls.__name__}.{f.name}"


def _classes(root: type) -> list[type]:
    out = [root]
    for _, typ in declared(root):
        sub = typ if is_dataclass(typ) else item_type(typ)
        if sub:
            out += _classes(sub)
    return out
