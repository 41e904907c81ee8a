"""Build the lmc Python package: the C extension lmc._lmc and its pure
Python modules (lmc, lmc.cachelib, lmc.flask_caching).

Normally run by `make python`, which passes through the environment:
  LMC_STATIC   the liblmc.a to link (built by `make`); linked statically so
               that the module needs no liblmc.so at run time
  LMC_CFLAGS   the project's compiler flags (warnings, -Werror, sanitizers)
  LMC_LDFLAGS  the project's linker flags (sanitizers)
Use Debian's interpreter: /usr/bin/python3 setup.py build.
"""
import os
import re
import shlex

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
HEADER = os.path.join(TOP, "include", "lmc.h")


def lib_version():
    text = open(HEADER, encoding="ascii").read()
    return re.search(r'#define LMC_VERSION_STRING "([^"]+)"', text).group(1)


static = os.environ.get("LMC_STATIC") or os.path.join(TOP, "build", "release", "liblmc.a")
if not os.path.exists(static):
    raise SystemExit(f"setup.py: {static} does not exist; run `make` first (or `make python`)")

cflags = shlex.split(os.environ.get("LMC_CFLAGS", "-std=c11 -Wall -Wextra -Werror"))
ldflags = shlex.split(os.environ.get("LMC_LDFLAGS", ""))

ext = Extension(
    "lmc._lmc",
    sources=["src/_lmc.c"],
    include_dirs=[os.path.join(TOP, "include")],
    extra_compile_args=cflags,
    # liblmc.a first, then what it needs.  --exclude-libs keeps the
    # library's lmc_* symbols out of the module's dynamic symbol table, so
    # they can never interpose on (or be interposed by) a liblmc.so that
    # something else in the process loaded.
    extra_objects=[static],
    libraries=["lmdb", "pthread", "m"],
    extra_link_args=ldflags + ["-Wl,--exclude-libs,ALL"],
    depends=[static, HEADER],
)

setup(
    name="lmc",
    version=lib_version(),
    description="One cache shared by every process on a host (LMDB), with "
    "cachelib and Flask-Caching backends",
    license="MIT",
    packages=["lmc"],
    ext_modules=[ext],
    python_requires=">=3.9",
)
