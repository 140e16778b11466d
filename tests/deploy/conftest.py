"""Fixtures of the deployment tests: a 2-bit spiking convnet trained briefly on the 8x8 digits (about 2 s on one
CPU thread), a real trained network with real spike statistics."""

import pytest

pytest.importorskip("sklearn.datasets")

from deploy_helpers import digits, trained  # noqa: E402


@pytest.fixture(scope="session")
def digits_data():
    return digits()


@pytest.fixture(scope="session")
def trained_digits(digits_data):
    """``(model, x_test, y_test)``: the 2-bit IF/hard-reset digits network after two epochs."""
    x_train, y_train, x_test, y_test = digits_data
    return trained(x_train, y_train), x_test, y_test
