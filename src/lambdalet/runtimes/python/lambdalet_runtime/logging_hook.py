"""Install AWS's logging handler at the moment the function first imports `logging`.

Importing `logging` costs several milliseconds of cold start; most of the time a function (or a
library such as boto3) imports it anyway, but when it does not, nothing is paid.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # the `typing` module itself is not imported: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable


class _LoaderProxy:
    """Runs the real loader, then the callback, once the module has executed."""

    def __init__(self, loader, on_loaded: Callable[[], None]) -> None:
        self._loader = loader
        self._on_loaded = on_loaded

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._on_loaded()

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _LoggingFinder:
    """A meta-path finder that only watches for the top-level `logging` package."""

    def __init__(self, on_loaded: Callable[[], None]) -> None:
        self._on_loaded = on_loaded

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _LoaderProxy(spec.loader, self._on_loaded)
                return spec
        return None


def when_logging_imported(callback: Callable[[], None]) -> None:
    """Call `callback` now if `logging` is loaded, else right after it gets imported."""
    if "logging" in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _LoggingFinder(callback))
