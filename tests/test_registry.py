from __future__ import annotations

import pytest

from harness.core.errors import UserError
from harness.core.registry import Registry


def test_unknown_names_list_the_known_ones_and_suggest_the_closest():
    r = Registry("model")
    for name in ("lenet", "resnet18", "resnext"):
        r.register(name, object())
    with pytest.raises(UserError, match=r"unknown model 'resnet19' \(known: lenet, resnet18, resnext\); "
                                         r"did you mean 'resnet18'\?"):
        r.get("resnet19")
    assert r.names("res*") == ["resnet18", "resnext"]
    with pytest.raises(ValueError, match="registered twice"):
        r.register("lenet", object())
