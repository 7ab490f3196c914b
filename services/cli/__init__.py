"""The command-line adapter: `sightline ...`, a thin layer over the use-cases."""
