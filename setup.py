"""Build conv's Cython extensions.

Everything about compilation lives here, once:
  * Cython directives: boundscheck/wraparound/initializedcheck off, cdivision on,
    language_level 3. CONV_DEBUG=1 turns the checks back on (bounds errors become
    IndexError instead of undefined behaviour), builds with -O0 -g and defines
    CONV_DEBUG for the C code (the micro-kernels' entry assertions, _simd.h).
  * Threads: on POSIX systems the kernels run on conv's own pthreads pool
    (conv/methods/_pool.h; -pthread). Elsewhere (MSVC) OpenMP, proved by compiling,
    linking and running a tiny program; if that fails the build is serial and a
    warning says so: the install never fails for lack of threads.
    CONV_SERIAL=1 (or its old name CONV_DISABLE_OPENMP=1) forces the serial build,
    which the tests build to check that it agrees bit for bit.
  * Optimization: -O3 by default. CONV_NATIVE=1 adds -march=native, which makes a
    binary that only runs on CPUs like the build machine: opt-in, never in wheels.
Ask an installed conv which build it is: ``python -c "import conv; conv.show_config()"``.
"""
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _load_env_flag():
    """conv._env.env_flag, loaded by path (the package cannot be imported before it is built)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv", "_env.py")
    spec = importlib.util.spec_from_file_location("_conv_env", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.env_flag


_env_flag = _load_env_flag()

DEBUG = _env_flag("CONV_DEBUG")
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

EXTENSIONS = [
    Extension("conv._buildinfo", ["conv/_buildinfo.pyx"]),
    Extension("conv.methods._kernels", ["conv/methods/_kernels.pyx"]),
]
# Kernels also built for AVX2+FMA and for AVX-512F; conv.methods._compiled picks one at
# import.
SIMD_KERNELS = ["conv.methods._kernels"]


def _is_x86_64():
    """Whether the *target* is x86-64 (sysconfig follows cross-compilation settings;
    a universal2 macOS build also has an arm64 slice, so it gets no x86 variants)."""
    target = sysconfig.get_platform().lower()
    return target.endswith(("x86_64", "amd64"))


if _is_x86_64():
    for _name in SIMD_KERNELS:
        for _isa in ("avx2", "avx512"):
            _path = _name.replace(".", "/") + f"_{_isa}.pyx"
            EXTENSIONS.append(Extension(f"{_name}_{_isa}", [_path]))

#: compiler flags of each x86 variant (GCC/Clang, MSVC)
ISA_FLAGS = {
    "_avx2": (["-mavx2", "-mfma"], ["/arch:AVX2"]),
    "_avx512": (["-mavx512f", "-mavx2", "-mfma"], ["/arch:AVX512"]),
}

_OPENMP_TEST = textwrap.dedent(
    r"""
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\n", n);
        return n == omp_get_max_threads() ? 0 : 1;
    }
    """
)


def _openmp_candidates(compiler_type):
    """OpenMP flag sets to try where conv's pthreads pool is not available."""
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    return [(["-fopenmp"], ["-fopenmp"]), (["-qopenmp"], ["-qopenmp"])]


SERIAL = _env_flag("CONV_SERIAL") or _env_flag("CONV_DISABLE_OPENMP")


def probe_openmp(compiler):
    """(compile_args, link_args) that build and run an OpenMP program, or None."""
    tmp = tempfile.mkdtemp(prefix="conv-openmp-")
    try:
        src = os.path.join(tmp, "test_openmp.c")
        with open(src, "w") as fh:
            fh.write(_OPENMP_TEST)
        for cflags, ldflags in _openmp_candidates(compiler.compiler_type):
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                exe = os.path.join(tmp, "test_openmp")
                # the build's own LDFLAGS too (sanitizers, coverage), which the
                # compiler object does not apply to executables by itself
                compiler.link_executable(
                    objs, exe, extra_preargs=shlex.split(os.environ.get("LDFLAGS", "")),
                    extra_postargs=ldflags,
                )
                if compiler.compiler_type == "msvc":
                    exe += ".exe"
                result = subprocess.run(
                    [exe], capture_output=True, text=True, timeout=60,
                    env=dict(os.environ, OMP_NUM_THREADS="2"),
                )
                if result.returncode == 0:
                    return cflags, ldflags
            except Exception:  # noqa: BLE001 - any failure means "not this flag set"
                continue
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        posix = os.name == "posix" and ctype != "msvc"
        omp, macros = None, []
        if DEBUG:
            macros.append(("CONV_DEBUG", "1"))
        if SERIAL:
            print("conv: CONV_SERIAL is set: building the serial (one thread) version")
            macros.append(("CONV_SERIAL", "1"))
        elif posix:
            omp = (["-pthread"], ["-pthread"])  # conv's own thread pool (_pool.h)
        else:
            omp = probe_openmp(self.compiler)
        if omp is None and not SERIAL:
            msg = (
                "conv: no working OpenMP found for this compiler; building the SERIAL "
                "version (correct, but single-threaded). Install an OpenMP runtime "
                "and reinstall for parallel kernels."
            )
            print("*" * 78 + "\n" + msg + "\n" + "*" * 78, file=sys.stderr)
            import warnings

            warnings.warn(msg)
        cflags, ldflags = [], []
        if ctype == "msvc":
            cflags.append("/O2")
        else:
            cflags += ["-O0", "-g"] if DEBUG else ["-O3"]
            cflags.append("-Wno-psabi")  # 32-byte vector types in the portable build are fine
            if _env_flag("CONV_NATIVE"):
                cflags.append("-march=native")
        if omp is not None:
            cflags += omp[0]
            ldflags += omp[1]
        for ext in self.extensions:
            extra = []
            for suffix, (gcc, msvc) in ISA_FLAGS.items():
                if ext.name.endswith(suffix):
                    extra = msvc if ctype == "msvc" else gcc
            ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags + extra
            ext.extra_link_args = list(ext.extra_link_args or []) + ldflags
            ext.define_macros = list(ext.define_macros or []) + macros
        super().build_extensions()


setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives=DIRECTIVES,
        # regenerate the C every build: cythonize otherwise goes by timestamps only, and a
        # switch of CONV_DEBUG would silently keep the previous directives
        force=True,
        quiet=True,
    ),
    cmdclass={"build_ext": BuildExt},
)
