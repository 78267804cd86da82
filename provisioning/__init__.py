"""The center side of terminal provisioning: pairing console and CLI, Dynamic Security accounts,
the center broker's generated configuration, a small CA. See provisioning/README.md."""
