"""Stubs of the native module psleak._psleak (crates/psleak-python)."""

from collections.abc import Callable
from typing import Any, final

__all__ = [
    "BACKEND",
    "BUILD_PROFILE",
    "DEFAULT_MEMORY_BUDGET",
    "METRICS",
    "Census",
    "CoreReport",
    "ProbeError",
    "__version__",
    "census_growth",
    "fd_count",
    "fd_list",
    "format_bytes",
    "malloc_stats",
    "malloc_trim",
    "memory_counters",
    "memory_quick",
    "process_memory",
    "refcount_census",
    "run_check",
    "thread_count",
    "thread_list",
]

__version__: str
BUILD_PROFILE: str
BACKEND: str
DEFAULT_MEMORY_BUDGET: int
METRICS: list[str]

class ProbeError(OSError): ...

@final
class CoreReport:
    def data(self) -> dict[str, Any]: ...
    def text(self) -> str: ...
    def svg(self) -> str: ...
    def add_site(
        self,
        tracer: str,
        bytes_per_call: float,
        blocks_per_call: float,
        frames: list[tuple[str, int, str | None]],
    ) -> None: ...

def malloc_stats() -> dict[str, int]: ...
def malloc_trim() -> bool: ...
def process_memory() -> dict[str, int]: ...
def memory_quick() -> tuple[int, int]: ...
def memory_counters() -> dict[str, int]: ...
def fd_count() -> int: ...
def fd_list() -> list[dict[str, Any]]: ...
def thread_count() -> int: ...
def thread_list() -> list[dict[str, Any]]: ...
def format_bytes(v: float) -> str: ...
def run_check(
    fun: Callable[[], object],
    *,
    name: str,
    warmup: int | None,
    times: int | None,
    retries: int,
    tolerance: dict[str, int],
    memory_budget: int,
    memory: bool = True,
    fds: bool = True,
    threads: bool = True,
    handles: bool = True,
    track_native: bool = True,
    settle: Callable[[], object] | None = None,
    blocks: Callable[[], int] | None = None,
    refs: Callable[[], int] | None = None,
    resources: Callable[[str], list[dict[str, str]]] | None = None,
    progress: Callable[[dict[str, Any]], object] | None = None,
    runs_decided: Callable[[bool, int, float], int] | None = None,
) -> CoreReport: ...

@final
class Census:
    """Reference counts of objects at one moment (address, count), sorted by address."""

    def __len__(self) -> int: ...
    @property
    def tracked(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

def refcount_census(objects: list[Any], *, skip_tracked_referents: bool, skip_immortal: bool) -> Census: ...
def census_growth(
    before: Census,
    objects: list[Any],
    *,
    min_growth: int,
    skip_tracked_referents: bool,
    skip_immortal: bool,
) -> list[tuple[Any, int, int]]: ...
