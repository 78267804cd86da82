"""Declarative configuration shared by every room: one `opt()` per key, sections as frozen dataclasses,
layered loading (TOML files ← environment), every problem named at once. Imports nothing of ours.

`configuration.schema` is the mechanism, `configuration.docs` renders a schema as Markdown;
see configuration/README.md.
"""
