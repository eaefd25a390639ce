"""A stopping process waits for the deliveries in progress (to be answered
and recorded), within a bound, and takes no new one."""
import threading
import time

from tmail.mailpath.draining import Draining


def test_stop_waits_for_a_delivery_in_progress():
    drain, finished = Draining(), []

    def delivery():
        with drain.delivery():
            time.sleep(0.5)
            finished.append(drain.stopping.is_set())
    thread = threading.Thread(target=delivery)
    thread.start()
    time.sleep(0.1)
    assert drain.stop(grace=10) == 0
    assert finished == [True]       # it ran to its end, and could see the stop
    thread.join()


def test_stop_gives_up_after_its_grace_and_says_how_many_are_left():
    drain, release = Draining(), threading.Event()

    def delivery():
        with drain.delivery():
            release.wait(10)
    thread = threading.Thread(target=delivery)
    thread.start()
    time.sleep(0.1)
    assert drain.stop(grace=0.3) == 1
    release.set()
    thread.join()
    assert drain.stop(grace=0) == 0
