"""The one compiled part: dnsd.io._replay, a quiet UDP listener's loop (dnsd/io/_replay.c; issue 18).

Everything else is in pyproject.toml. ``optional``: without a C compiler the package still installs
and dnsd answers through Python's socket calls instead (dnsd.io.udp.serve).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dnsd.io._replay", ["dnsd/io/_replay.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"])])
