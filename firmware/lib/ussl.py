# umqtt.simple 1.3.4 (lib/umqtt) imports `ussl` for TLS; MicroPython 1.2x has the module as
# `ssl` only.
from ssl import *  # noqa: F403
