"""collector.py: the collector is off inside the pause, back on after it, and what the block made is handed
to the oldest generation (no young collection has to traverse it later)."""

from __future__ import annotations

import gc

from diagnose.collector import collector_paused, settle


def test_collector_paused_and_restored():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        made = [[i] for i in range(50_000)]
        assert gc.get_count()[0] >= 50_000
    assert gc.isenabled()
    assert gc.get_count()[0] < 1_000  # the block's objects are no longer young
    assert any(made[0] is obj for obj in gc.get_objects(generation=2))


def test_collector_restored_after_an_error():
    try:
        with collector_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_already_disabled_stays_disabled():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_a_caller_froze_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_cyclic_garbage_made_in_the_pause_is_still_collected():
    class Node:
        pass

    with collector_paused():
        node = Node()
        node.self = node
        count = sum(isinstance(o, Node) for o in gc.get_objects())
        del node
    assert count == 1
    gc.collect()
    assert not any(isinstance(o, Node) for o in gc.get_objects())


def test_settle_moves_young_objects_to_the_oldest_generation():
    gc.disable()
    try:
        made = [[i] for i in range(10_000)]
        assert any(made[0] is obj for obj in gc.get_objects(generation=0))
        settle()
        assert gc.get_count()[0] == 0
        assert any(made[0] is obj for obj in gc.get_objects(generation=2))
    finally:
        gc.enable()
