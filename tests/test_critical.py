"""Critical sections (:mod:`nirbridge._critical`): a stop signal inside one is handled
right after it, by the handler that was there, and never inside it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from nirbridge._critical import signals_deferred
from nirbridge.cli._signals import Interrupted, interrupts_as_exceptions


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_inside_is_raised_after_the_section(sig):
    reached = []
    with interrupts_as_exceptions():
        with pytest.raises(Interrupted) as info:
            with signals_deferred():
                os.kill(os.getpid(), sig)
                time.sleep(0.05)  # Python would have run a handler by now
                os.kill(os.getpid(), signal.SIGINT)  # a second one: the first counts
                time.sleep(0.05)
                reached.append("end of the section")
            reached.append("after the section")  # the re-sent signal raised before this
        assert info.value.signum == sig
    assert reached == ["end of the section"]


def test_the_handlers_come_back_and_a_quiet_section_sends_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with signals_deferred():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    got = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        with signals_deferred():
            pass
        os.kill(os.getpid(), signal.SIGUSR1)  # a signal not held is handled as usual
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert got == [signal.SIGUSR1]


def test_outside_the_main_thread_it_changes_nothing():
    seen = []

    def body():
        with signals_deferred():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [before]
