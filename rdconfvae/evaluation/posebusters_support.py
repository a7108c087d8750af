"""The optional PoseBusters package, as the validity checks use it.

:func:`require_posebusters` imports it (or says how to install it) and :func:`with_defaults`
reads the keyword defaults of one of its check functions, so that every threshold comes from
PoseBusters itself. Used by :mod:`rdconfvae.evaluation.validity` and
:mod:`rdconfvae.evaluation.energy_ratio`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["require_posebusters", "with_defaults"]


def require_posebusters() -> type:
    """PoseBusters' ``PoseBusters`` class; ``ImportError`` with the install hint when the
    optional package is missing (checked before a validity run starts)."""
    try:
        from posebusters import PoseBusters
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validity checks need the optional 'posebusters' package: "
            "pip install 'rdconfvae[bench]' (or pip install posebusters)"
        ) from exc
    return PoseBusters


def with_defaults(func: Callable[..., Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` over the keyword defaults of PoseBusters' own ``func`` (nothing invented)."""
    out = {
        k: p.default
        for k, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    out.update(params or {})
    return out
