"""Clean functions of the standard library that churn the allocator: caches that fill and
evict (re's pattern cache), strings of varying sizes, dict insert/delete, compression,
hashing. None leaks; psleak must pass every one, under pymalloc and PYTHONMALLOC=malloc.

Run as a script, it checks them all and prints one line per false positive, then
``false positives: N``. tests/test_stdlib_clean.py runs it in fresh processes.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import io
import itertools
import json
import re
import struct
import warnings
import zlib

import psleak

_count = itertools.count()
_scratch: dict[int, int] = {}


def json_roundtrip() -> None:
    json.loads(json.dumps({"a": [1, 2, 3], "b": "x" * 50}))


def re_cache_eviction() -> None:
    # 700 patterns for a 512-entry cache: compiled patterns are evicted all the time.
    re.match(rf"a(b+)c{next(_count) % 700}", "abbbc1")


def datetime_format() -> None:
    datetime.datetime.now().isoformat()


def decimal_arithmetic() -> None:
    decimal.Decimal("1.1") * decimal.Decimal(next(_count))


def sha256() -> None:
    hashlib.sha256(b"x" * 1000).hexdigest()


def zlib_roundtrip() -> None:
    zlib.decompress(zlib.compress(b"abc" * 1000))


def struct_roundtrip() -> None:
    struct.unpack("<iid", struct.pack("<iid", 1, 2, 3.0))


def bytesio() -> None:
    io.BytesIO(b"x" * 10000).read()


def varying_strings() -> None:
    "{}-{}".format(next(_count), "y" * (next(_count) % 300))


def dict_churn() -> None:
    k = next(_count)
    _scratch[k] = k
    del _scratch[k]


def list_comprehension() -> None:
    [x * 2 for x in range(1000)]


FUNCTIONS = [
    json_roundtrip,
    re_cache_eviction,
    datetime_format,
    decimal_arithmetic,
    sha256,
    zlib_roundtrip,
    struct_roundtrip,
    bytesio,
    varying_strings,
    dict_churn,
    list_comprehension,
]


def main() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)
    bad = 0
    for fun in FUNCTIONS:
        report = psleak.check(fun)
        if not report.clean:
            bad += 1
            print(report.text)
    print(f"false positives: {bad}")


if __name__ == "__main__":
    main()
