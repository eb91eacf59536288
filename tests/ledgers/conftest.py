"""Fixtures of the ledger tests."""

from __future__ import annotations

import pytest

from tests.support.ledger_beds_iota import FakeIotaNode


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    """One fake IOTA GraphQL node process per test module."""
    node = FakeIotaNode(tmp_path_factory.mktemp("fake-iota"))
    yield node
    node.stop()


@pytest.fixture
def node(shared_node):
    """The module's fake IOTA node, running and emptied for this test."""
    if shared_node.proc is None:
        shared_node.restart()
    shared_node.control("reset", {})
    return shared_node
