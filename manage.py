#!/usr/bin/env python
import atexit
import gc
import os
import sys

from django.core.management import execute_from_command_line


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # Registered first, so it runs last: once the exit handlers are done, nothing is
    # left for the collector but tearing the project's modules down, and those
    # collections cost every command 0.4 s at exit on a small machine
    # (docs/architecture.md, "What a command loads"). Refcounted objects are still
    # freed (files closed); only objects in cycles stay until the process ends.
    atexit.register(gc.freeze)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
