"""The methods: one dict of name -> class, plus third-party methods from the ``ssl_bench.methods`` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from ssl_bench.config import unknown
from ssl_bench.methods.autoencoder import Autoencoder
from ssl_bench.methods.base import Method, MethodConfig
from ssl_bench.methods.jigsaw import Jigsaw
from ssl_bench.methods.npid import NPIDpp
from ssl_bench.methods.pirl import PIRL
from ssl_bench.methods.random_init import RandomInit
from ssl_bench.methods.rotnet import RotNet
from ssl_bench.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {
    "random": RandomInit,
    "supervised": Supervised,
    "autoencoder": Autoencoder,
    "rotnet": RotNet,
    "jigsaw": Jigsaw,
    "npidpp": NPIDpp,
    "pirl": PIRL,
}


def available_methods() -> dict[str, type[Method]]:
    """Built-in methods, then any registered by installed packages under the ``ssl_bench.methods`` group."""
    found = dict(METHODS)
    for ep in entry_points(group="ssl_bench.methods"):
        found.setdefault(ep.name, ep.load())
    return found


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name not in methods:
        raise unknown("method", name, list(methods))
    return methods[name]


__all__ = ["METHODS", "Method", "MethodConfig", "available_methods", "get_method"]
