"""Build tooling for the terminal's SD-card image: assemble the partitions, stamp the boot partition,
publish the artifacts. Scripts in image-build/ put that directory on sys.path."""
