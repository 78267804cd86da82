from pathlib import Path

from device import config_doc

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


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
