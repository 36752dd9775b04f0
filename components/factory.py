"""Build a component from its ports and docstring plus its rows of the parameter table.

kfp ships a lightweight component as the text of its function and, in the container, reads the typed
signature off that text; so the signature is written out as source, compiled, and registered with
``linecache`` (as attrs does for the methods it generates) so that ``inspect.getsource`` finds it. The
body is the same for every step: one call into ``components.runtime``.
"""

from __future__ import annotations

import linecache
from typing import Any

from .image import IMAGE
from .params import PARAMS, REQUIRED, STEPS, Param, step_params

_BODY = '''def {name}(
{signature}
){returns}:
    """{doc}"""
    from components.runtime import run_component

    return run_component({name!r}, locals())
'''


_SPECS: dict[str, tuple[tuple[str, ...], str, str]] = {}  # step -> (ports, doc, returns), as its module gave them


def _parameter(p: Param) -> str:
    annotation = p.type.__name__
    return f"{p.name}: {annotation}" if p.default is REQUIRED else f"{p.name}: {annotation} = {p.default!r}"


def source(step: str, ports: tuple[str, ...], doc: str, returns: str = "", table: tuple[Param, ...] = PARAMS) -> str:
    """The component function's source: ``ports`` (its artifacts and data-flow inputs, each as Python
    source), then its table parameters; required ones first, as Python wants them before any default."""
    rows = step_params(step, table)
    required = [_parameter(p) for p in rows if p.default is REQUIRED]
    optional = [_parameter(p) for p in rows if p.default is not REQUIRED]
    port_required = [s for s in ports if "=" not in s]
    port_optional = [s for s in ports if "=" in s]
    signature = "".join(f"    {arg},\n" for arg in port_required + required + port_optional + optional).rstrip("\n")
    return _BODY.format(name=step, signature=signature, returns=f" -> {returns}" if returns else "", doc=doc.strip())


def component(step: str, ports: tuple[str, ...], doc: str, returns: str = "", table: tuple[Param, ...] = PARAMS):
    """The kfp component of ``step`` on the one image; see the module docstring."""
    from kfp import dsl

    _SPECS[step] = (ports, doc, returns)

    text = source(step, ports, doc, returns, table)
    filename = f"<raserec component {step} {abs(hash(text)):x}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {}
    # What kfp puts above the function in the container, so the annotations resolve the same way.
    exec("from kfp.dsl import *\nfrom typing import *", namespace)  # noqa: S102
    exec(compile(text, filename, "exec", dont_inherit=True), namespace)  # noqa: S102  (real annotations, not strings)
    func = namespace[step]
    func.__module__ = f"components.{step}"
    return dsl.component(func, base_image=IMAGE, install_kfp_package=False)


def build_all(table: tuple[Param, ...] = PARAMS) -> dict[str, Any]:
    """The six components over ``table``: the modules' own for the project's table, else rebuilt from their
    ports and docstrings (how a test sees a new table row reach every component that takes it)."""
    import importlib

    comps = {step: getattr(importlib.import_module(f"components.{step}"), step) for step in STEPS}
    if table is PARAMS:
        return comps
    return {step: component(step, *_SPECS[step], table=table) for step in STEPS}
