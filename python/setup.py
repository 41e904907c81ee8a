"""Build the lmc Python package: the C extension lmc._lmc and its pure
Python modules (lmc, lmc.cachelib, lmc.flask_caching, lmc.flask).

The metadata is in pyproject.toml; this file adds what only code can say:
the version, read from include/lmc.h so that it is the library's, and the
extension, which needs the C library in one of two ways:

- With LMC_STATIC set, the extension links that liblmc.a.  `make python`
  and the Debian package build do this, with the library the top-level
  Makefile built, and also pass
    LMC_CFLAGS   the project's compiler flags (warnings, -Werror, sanitizers)
    LMC_LDFLAGS  the project's linker flags (sanitizers)
  so that a sanitizer build tests a sanitized library.
- Without it (`pip install ./python`), the library's sources, ../lib/*.c,
  are compiled into the extension.  A pip install from a fresh clone then
  needs only a C compiler and the headers of LMDB and Python, and it can
  never link a liblmc.a left over from an older build of the tree.  It
  needs the tree around python/, so it works from a checkout, not from an
  sdist.

Either way the library is inside the module, which needs no liblmc.so at
run time, and a linker version script exports PyInit__lmc alone: the
library's lmc_* symbols can never interpose on (or be interposed by) a
liblmc.so that something else in the process loaded.
"""
import glob
import os
import re
import shlex

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
HEADER = os.path.join(TOP, "include", "lmc.h")
EXPORTS = os.path.join(HERE, "src", "_lmc.map")


def lib_version():
    with open(HEADER, encoding="ascii") as f:
        return re.search(r'#define LMC_VERSION_STRING "([^"]+)"', f.read()).group(1)


static = os.environ.get("LMC_STATIC")
if static:
    if not os.path.exists(static):
        raise SystemExit(f"setup.py: LMC_STATIC={static} does not exist; run `make` first")
    sources = ["src/_lmc.c"]
    objects = [static]
    depends = [static, HEADER]
    # The default of a direct `LMC_STATIC=... setup.py build`; make passes
    # its own.
    default_cflags = "-std=c11 -Wall -Wextra -Werror"
else:
    lib_sources = sorted(glob.glob(os.path.join(TOP, "lib", "*.c")))
    if not lib_sources:
        raise SystemExit(f"setup.py: no library sources in {TOP}/lib: build from the lmc tree")
    sources = ["src/_lmc.c"]
    objects = []
    depends = [HEADER] + glob.glob(os.path.join(TOP, "lib", "*.h"))
    # The library's own build flags, less -Werror (another compiler may warn
    # where ours does not).  Python's CFLAGS carry -DNDEBUG; -UNDEBUG keeps
    # the library's assertions, as in every other build of it.
    default_cflags = ("-std=c11 -fvisibility=hidden -UNDEBUG -Wall -Wextra "
                      "-Wno-missing-field-initializers")


class BuildExt(build_ext):
    """Adds the library's sources, when it is built from them, only when the
    extension is compiled: setuptools refuses paths outside python/ among the
    arguments of setup() (they would go into an sdist), and ../lib/x.c would
    put its object beside the build directory instead of in it."""

    def build_extension(self, ext):
        if not static:
            ext.sources = ext.sources + lib_sources
        super().build_extension(ext)


cflags = shlex.split(os.environ.get("LMC_CFLAGS", default_cflags))
ldflags = shlex.split(os.environ.get("LMC_LDFLAGS", ""))

ext = Extension(
    "lmc._lmc",
    sources=sources,
    include_dirs=[os.path.join(TOP, "include")],
    extra_compile_args=cflags,
    # liblmc.a (if any) first, then what the library needs.
    extra_objects=objects,
    libraries=["lmdb", "pthread", "m"],
    extra_link_args=ldflags + ["-Wl,--version-script=" + EXPORTS],
    depends=depends + [EXPORTS],
)

# The package is listed here, not found by setuptools: its automatic
# discovery would take src/ for a source layout.
setup(version=lib_version(), packages=["lmc"], ext_modules=[ext], cmdclass={"build_ext": BuildExt})
