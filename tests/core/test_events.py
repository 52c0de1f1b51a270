"""Event and EmitterGroup: connect, disconnect, the order heard, a callback that lets go of
itself while it is heard; the LabelMap's named events."""
import numpy as np

from segview.core.events import EmitterGroup, Event
from segview.core.labels import LabelMap


def test_callbacks_are_heard_in_the_order_connected_with_the_arguments_emitted():
    event, heard = Event("changed"), []
    event.connect(lambda value: heard.append(("first", value)))
    event.connect(lambda value: heard.append(("second", value)))
    event.emit(7)
    assert heard == [("first", 7), ("second", 7)]


def test_connect_returns_the_callback_and_serves_as_a_decorator():
    event, heard = Event("step"), []

    @event.connect
    def follow():
        heard.append("step")

    event.emit()
    assert heard == ["step"] and event.connected(follow)


def test_connecting_twice_is_heard_once_and_one_disconnect_lets_go():
    event, heard = Event("changed"), []
    event.connect(heard.append)
    event.connect(heard.append)
    event.emit(1)
    assert heard == [1] and len(event) == 1
    event.disconnect(heard.append)
    event.emit(2)
    assert heard == [1] and len(event) == 0


def test_disconnecting_what_is_not_connected_does_nothing():
    event, heard = Event("changed"), []
    event.connect(heard.append)
    event.disconnect(print)
    event.emit(1)
    assert heard == [1]


def test_a_callback_may_disconnect_itself_while_heard_and_the_rest_are_still_heard():
    event, heard = Event("changed"), []

    def once(value):
        heard.append(("once", value))
        event.disconnect(once)

    event.connect(once)
    event.connect(lambda value: heard.append(("always", value)))
    event.emit(1)
    event.emit(2)
    assert heard == [("once", 1), ("always", 1), ("always", 2)]


def test_bound_methods_of_one_object_are_one_callback_those_of_another_are_not():
    class Follower:
        def __init__(self):
            self.heard = []

        def changed(self, value):
            self.heard.append(value)

    event, one, other = Event("changed"), Follower(), Follower()
    event.connect(one.changed)
    event.connect(other.changed)
    event.disconnect(one.changed)  # a new bound method object, equal to the one connected
    event.emit(3)
    assert one.heard == [] and other.heard == [3]


def test_a_group_disconnects_a_callback_from_each_of_its_events_and_no_other():
    class Group(EmitterGroup):
        def __init__(self):
            self.changed = Event("changed")
            self.marked = Event("marked")

    group, heard, kept = Group(), [], []
    for event in group:
        event.connect(heard.append)
    group.changed.connect(kept.append)
    group.disconnect(heard.append)
    group.changed.emit(1)
    group.marked.emit(2)
    assert [event.name for event in group] == ["changed", "marked"]
    assert heard == [] and kept == [1]


def test_a_label_map_names_its_events_changed_marked_and_step():
    labels = LabelMap(np.zeros((3, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    heard = []
    labels.events.changed.connect(lambda edit: heard.append(("changed", edit.region[0].start)))
    labels.events.marked.connect(lambda mark: heard.append(("marked", mark.z, mark.new)))
    labels.events.step.connect(lambda: heard.append(("step",)))
    with labels.step():
        labels.paint(1, [(4, 4)], 1.5, 1)
        labels.set_reviewed(1)
    assert heard == [("changed", 1), ("marked", 1, True), ("step",)]
    heard.clear()
    labels.undo()
    assert heard == [("marked", 1, False), ("changed", 1), ("step",)]
