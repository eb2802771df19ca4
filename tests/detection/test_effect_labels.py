"""Effect labels (cosim.attacks.effect): an attack is labelled by its effect only where it
changed what its victim received; interval labels stay as they were."""

from __future__ import annotations

import numpy as np
import pytest

from cosim import Causality, Master, PythonUnit, Variable, VarType
from cosim.attacks import Attack, Campaign, CommandInjection, MeasurementSpoofing
from cosim.attacks.effect import EffectProbe, changed, scale_of, signal_of
from cosim.core.observer import Observer
from cosim.core.unit import real
from cosim.detection.metrics import effect_intervals, score_run

DT, EVERY = 0.01, 5


class Source(PythonUnit):
    """``y`` is 0 until ``t_on`` then 2.0 (a pressure that is zero while the press is open);
    ``cmd`` is true from ``t_on`` on (a command)."""

    VARIABLES = (real("y", "output"), Variable("cmd", Causality.OUTPUT, VarType.BOOLEAN, False))
    t_on = 1.0

    def do_step(self, t: float, h: float) -> None:
        self.values["y"] = 2.0 if t + h >= self.t_on else 0.0
        self.values["cmd"] = t + h >= self.t_on


class Sink(PythonUnit):
    VARIABLES = (real("y", "input"), Variable("cmd", Causality.INPUT, VarType.BOOLEAN, False))

    def do_step(self, t: float, h: float) -> None:
        pass


class Sampler(Observer):
    def __init__(self) -> None:
        self.ticks: list[int] = []

    def after_step(self, tick: int) -> None:
        if tick % EVERY == 0:
            self.ticks.append(tick)


class Quiet(Attack):
    """An attack without manipulators (acts by a timer, like a DoS acts by a conduit hook)."""

    kind = "dos"

    def install(self, master) -> None:
        self.add_timer(master, lambda tick: None)


def run(attacks: list[Attack], scales: dict[str, float], duration: float = 2.0):
    m = Master(DT)
    m.add_unit(Source("src"))
    m.add_unit(Sink("dst"))
    m.connect("src.y", "dst.y")
    m.connect("src.cmd", "dst.cmd")
    campaign = m.add_observer(Campaign(attacks))
    probe = m.add_observer(EffectProbe(campaign, scales))
    sampler = m.add_observer(Sampler())
    m.run(duration=duration)
    times = np.asarray([m.grid.time(k) for k in sampler.ticks])
    return times, campaign.ground_truth.labels(times), probe.labels(sampler.ticks, EVERY)


def test_a_scale_spoof_has_no_effect_on_a_zero_signal_and_an_effect_on_a_non_zero_one() -> None:
    spoof = MeasurementSpoofing("s", "src.y", start=0.5, duration=1.0, mode="scale", factor=1.61)
    t, interval, effect = run([spoof], {"src.*": 0.1})
    inside = (t >= 0.5) & (t < 1.5)
    assert set(np.asarray(interval)[inside]) == {"spoofing"} and set(np.asarray(interval)[~inside]) == {"normal"}
    effect = np.asarray(effect)
    assert set(effect[(t >= 0.5) & (t < 1.0)]) == {"normal"}  # 1.61 x 0 = 0: nothing changed
    assert set(effect[(t >= 1.1) & (t < 1.5)]) == {"spoofing"}  # 1.61 x 2.0 differs by 1.22 > 0.1
    assert set(effect[~inside]) == {"normal"}  # never an effect where the interval label is normal


def test_a_change_within_the_signal_scale_is_no_effect() -> None:
    spoof = MeasurementSpoofing("s", "src.y", start=0.5, duration=1.0, mode="scale", factor=1.01)  # +0.02
    _, interval, effect = run([spoof], {"src.y": 0.1})
    assert "spoofing" in interval and set(effect) == {"normal"}
    _, _, effect = run([MeasurementSpoofing("s", "src.y", start=0.5, duration=1.0, mode="scale", factor=1.01)],
                       {"src.y": 0.01})
    assert "spoofing" in effect  # the same change is an effect on a signal with a finer scale


def test_a_forged_command_has_an_effect_only_where_it_differs_from_the_controllers() -> None:
    inject = CommandInjection("i", "src.cmd", start=0.5, duration=1.0, value=True)
    t, _, effect = run([inject], {"src.*": 0.1})  # commands have no scale: any change counts
    effect = np.asarray(effect)
    assert set(effect[(t >= 0.55) & (t < 1.0)]) == {"injection"}  # true forced while the PLC says false
    assert set(effect[(t >= 1.1) & (t < 1.5)]) == {"normal"}  # the PLC says true itself: nothing changed


def test_an_attack_without_manipulators_has_effect_equal_to_interval() -> None:
    _, interval, effect = run([Quiet("q", "c2f", start=0.5, duration=1.0)], {})
    assert effect == interval and "dos" in effect


def test_signal_scales_and_changes() -> None:
    scales = {"conveyor.speed_meas": 0.01, "cell.q_*": 0.02}
    assert signal_of("plc.valve_cmd -> press.valve") == "plc.valve_cmd"
    assert signal_of("press.valve") == "press.valve"
    assert scale_of("conveyor.speed_meas", scales) == 0.01
    assert scale_of("cell.q_3", scales) == 0.02
    assert scale_of("plc.valve_cmd", scales) == 0.0
    assert not changed(0.0, 0.0 * 1.61, 0.1) and changed(1.0, 1.61, 0.1) and not changed(1.0, 1.05, 0.1)
    assert changed(False, True, 0.0) and not changed(True, True, 0.0) and changed(0.5, 0.50001, 0.0)
    assert changed(1.0, float("nan"), 0.1)


def test_effect_events_start_at_the_first_effect_and_skip_attacks_without_one() -> None:
    t = np.arange(0.0, 10.0, 0.5)
    effect = ((t >= 3.0) & (t < 5.0)).astype(int)
    assert effect_intervals(t, effect, [(2.0, 5.0), (7.0, 9.0)]) == [(3.0, 5.0)]
    alarms = ((t >= 3.5) & (t < 6.0)).astype(int)  # raised 0.5 s after the effect, a tail to 6 s
    interval_labels = ((t >= 2.0) & (t < 5.0) | (t >= 7.0) & (t < 9.0)).astype(int)
    by_effect = score_run(t, effect, alarms, effect_intervals(t, effect, [(2.0, 5.0), (7.0, 9.0)]),
                          grace_s=2.0, y_attack=interval_labels)
    by_interval = score_run(t, interval_labels, alarms, [(2.0, 5.0), (7.0, 9.0)], grace_s=2.0)
    assert by_effect["median_delay_s"] == pytest.approx(0.5) and by_interval["median_delay_s"] == pytest.approx(1.5)
    assert by_effect["events"] == 1 and by_interval["event_recall"] == 0.5
    assert by_effect["recall"] > by_interval["recall"]
    # the tail after 5 s is point-wise false positive under both definitions, never a new false alarm
    assert by_effect["fp"] == by_interval["fp"] == 2 and by_effect["false_alarms"] == 0


def test_an_alarm_beginning_within_the_grace_is_left_out_of_the_grace_figure_only() -> None:
    t = np.arange(0.0, 20.0, 1.0)
    truth = ((t >= 5) & (t < 8)).astype(int)
    alarms = ((t >= 5) & (t < 7) | (t >= 9) & (t < 10) | (t >= 15) & (t < 16)).astype(int)
    raw = score_run(t, truth, alarms, [(5.0, 8.0)], grace_s=2.0)
    assert raw["false_alarms"] == 2  # onsets at 9 s (a tail after the end) and 15 s
    assert raw["false_alarms_per_hour_grace"] == pytest.approx(1 / raw["normal_hours"])  # only 15 s left
    none = score_run(t, truth, alarms, [(5.0, 8.0)], grace_s=0.0)
    assert {k: raw[k] for k in ("precision", "recall", "f1", "fp")} == {k: none[k] for k in ("precision", "recall",
                                                                                             "f1", "fp")}
