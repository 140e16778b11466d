"""A guard for tests: every tensor-to-Python conversion (the host synchronisations of a GPU) raises inside it."""

import contextlib

from torch import Tensor


@contextlib.contextmanager
def no_host_reads():
    """Make ``item``, ``tolist``, ``bool``, ``int``, ``float`` and ``index`` of any tensor raise ``AssertionError``."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor was read on the host")

    names = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")
    saved = {n: getattr(Tensor, n) for n in names}
    try:
        for n in names:
            setattr(Tensor, n, refuse)
        yield
    finally:
        for n, f in saved.items():
            setattr(Tensor, n, f)
