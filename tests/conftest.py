"""Shared fixtures (factories and strategies live in factories.py)."""

import pytest

from factories import make_everything, make_mlp


@pytest.fixture
def mlp():
    return make_mlp()


@pytest.fixture
def everything():
    return make_everything()
