"""The kiosk UI: the citizen's rating screens in Kivy, on top of the terminal core (`device`).

`python -m ui` runs the terminal with it (see ui/README.md). Modules that import Kivy (`app`,
`kiosk`, `screens`, `widgets`) must be imported after `ui.env` has prepared the environment.
"""
