"""LatestSlot: overwrite-and-count, timeouts, close, blocking put."""
import threading

from realtime.slot import LatestSlot


def _in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, result list)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    return thread, result


def test_overwrite_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    for i in range(5):
        assert slot.put(i)
    assert slot.dropped == 4
    assert slot.get(timeout=0) == 4
    assert slot.get(timeout=0) is None  # taken: empty again
    slot.put(10)
    assert slot.get(timeout=0) == 10
    assert slot.dropped == 4  # read in time: not dropped
    assert slot.put_count == 6 and slot.get_count == 2


def test_get_times_out_on_empty_slot():
    slot = LatestSlot()
    assert slot.get(timeout=0.05) is None
    assert slot.get(timeout=0) is None


def test_get_wakes_on_put_from_another_thread():
    slot = LatestSlot()
    thread, result = _in_thread(lambda: slot.get(timeout=10))
    slot.put("frame")
    thread.join(5)
    assert not thread.is_alive()
    assert result == ["frame"]


def test_close_wakes_waiting_getter():
    slot = LatestSlot()
    started = threading.Event()

    def wait():
        started.set()
        return slot.get(timeout=30)

    thread, result = _in_thread(wait)
    started.wait(5)
    slot.close()
    thread.join(5)
    assert not thread.is_alive()
    assert result == [None]
    assert slot.put("late") is False
    assert slot.get(timeout=0) is None


def test_item_stored_before_close_can_still_be_read():
    slot = LatestSlot()
    slot.put("last")
    slot.close()
    assert slot.get(timeout=0) == "last"
    assert slot.get(timeout=1) is None


def test_blocking_put_waits_until_taken():
    slot = LatestSlot()
    assert slot.put(1, block=True)
    thread, result = _in_thread(lambda: slot.put(2, block=True))
    thread.join(0.1)
    assert thread.is_alive()  # waiting: the slot is still full
    assert slot.get(timeout=1) == 1
    thread.join(5)
    assert result == [True]
    assert slot.get(timeout=1) == 2
    assert slot.dropped == 0


def test_blocking_put_times_out_without_dropping():
    slot = LatestSlot()
    slot.put(1)
    assert slot.put(2, block=True, timeout=0.05) is False
    assert slot.get(timeout=0) == 1
    assert slot.dropped == 0


def test_close_releases_blocked_putter():
    slot = LatestSlot()
    slot.put(1)
    thread, result = _in_thread(lambda: slot.put(2, block=True))
    thread.join(0.05)
    slot.close()
    thread.join(5)
    assert not thread.is_alive()
    assert result == [False]
