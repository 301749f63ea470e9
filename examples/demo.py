"""psleak demo: a C-level leak caught, its clean twin passed, an fd leak described.

Run with ``make demo``. The leaking "C extension" is libc itself, reached through ctypes:
``malloc(64)`` without ``free`` is exactly the bug psleak exists to catch.
"""

import ctypes
import os
import time

import psleak

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def leaky() -> None:
    libc.malloc(64)  # never freed


def clean() -> None:
    libc.free(libc.malloc(64))


def leaves_a_pipe_open() -> None:
    os.pipe()


def main() -> None:
    info = psleak.malloc_info()
    print(f"psleak {psleak.__version__} ({psleak.BUILD_PROFILE}); malloc: {dict(info)}")
    for fun in (leaky, clean, leaves_a_pipe_open):
        start = time.perf_counter()
        try:
            report = psleak.check(fun)
        except psleak.Error as e:  # pragma: no cover - check() returns, it does not raise
            print(e)
            continue
        elapsed = time.perf_counter() - start
        exc = report.exception()
        print(f"\n--- {fun.__name__}: {report.verdict} in {elapsed:.2f} s")
        print(str(exc) if exc is not None else report.text)


if __name__ == "__main__":
    main()
