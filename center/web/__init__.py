"""The phone channels on the web: pages, photos, static code tokens and printable cards."""
