"""Convolution kernels of d2l ch. 7 as benchmarkable families.

Importing this package registers every family in `KERNELS`:

    from harness.kernels import KERNELS
    fam = KERNELS.get("corr2d")
    case = fam.case(input=(32, 32), kernel=(3, 3))

Plugins: modules named in $HARNESS_PLUGINS (comma-separated, importable from sys.path) are
imported after the built-in families, so they can register more families or variants in every
command, subprocesses included (tests/test_regress.py registers a deliberately slowed kernel so).

Note: the seed function `corr2d` is exported here under the book's name, so the attribute
`harness.kernels.corr2d` is that function, not the family module; import the module with
`from harness.kernels.corr2d import ...` (or use the registry).

The experiment kinds `kernel` and `learn_kernel` (their spec models and checks) are kind.py; how
they become tasks, and the checks against the float64 reference, bench.py.
May import: harness.core. Never run/, track/, views/, gate/ or the CLI.
"""
from harness.kernels.base import KERNELS, Case, Family, Variant
from harness.kernels import corr2d as _corr2d_family, channels, pool  # noqa: F401 (registers)
from harness.kernels.learn import learn_edge_kernel
from harness.kernels.seed import (
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
    pool2d,
)

__all__ = [
    "KERNELS",
    "Case",
    "Family",
    "Variant",
    "corr2d",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "corr2d_multi_in_out_1x1",
    "pool2d",
    "learn_edge_kernel",
]


def _load_plugins() -> None:
    import importlib
    import os

    from harness.core.errors import UserError

    for name in filter(None, (n.strip() for n in os.environ.get("HARNESS_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name != e.name and not name.startswith(e.name + "."):
                raise UserError(_plugin_failed(name, e)) from None  # the plugin imports a missing module
            raise UserError(f"HARNESS_PLUGINS: cannot import {name!r} ({e}); put its directory on "
                            f"PYTHONPATH, or unset HARNESS_PLUGINS") from None
        except (Exception, SystemExit) as e:  # any failure of the plugin's own code is an input error
            raise UserError(_plugin_failed(name, e)) from None


def _plugin_failed(name: str, e: BaseException) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if "importlib" not in f.filename and f.filename != __file__]
    where = None if isinstance(e, SyntaxError) or not frames else f"{frames[-1].filename}:{frames[-1].lineno}"
    return (f"HARNESS_PLUGINS: importing plugin {name!r} raised {type(e).__name__}: {e}"
            + (f" (at {where})" if where else "") + f"; fix the plugin, or remove {name!r} from HARNESS_PLUGINS")


_load_plugins()
