"""What runs on this machine for a platform, outside the experiment's process.

`transfer` is the shared machinery (the harness file set, the secret scan,
deterministic archives, confinement of what comes back, adopting a pulled
record); each `<platform>` module holds that platform's bundle, push, status and
pull as plain functions. `cli/remote.py` parses the command lines and calls them.
"""
