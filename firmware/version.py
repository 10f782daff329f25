# The firmware's release, read back by `coldtrace devices info` (the project's version).
VERSION = "0.1.0"
