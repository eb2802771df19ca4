"""The robot controller's waypoint poses: solved once, then remembered per process and on disk."""

from __future__ import annotations

import json

import pytest

from cosim.errors import ConfigurationError
from models.cell import robot as robot_mod
from models.cell.robot import RobotController

WAYPOINTS = {"home": None, "above_pick": [-0.06, -0.5, 0.35], "fixture": [0.55, 0.0, 0.155]}


@pytest.fixture
def ik_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(robot_mod.IK_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(robot_mod, "_solved", {})
    return tmp_path


def test_poses_are_solved_once_and_then_read_back_exactly(ik_cache, monkeypatch):
    first = RobotController("robot", "kuka", WAYPOINTS, home_yaw=-0.5).poses
    files = list(ik_cache.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["poses"] == first

    def no_solving(*args, **kwargs):
        raise AssertionError("solved again")

    monkeypatch.setattr(RobotController, "_solve", staticmethod(no_solving))
    monkeypatch.setattr(robot_mod, "_solved", {})  # a new process: only the file is left
    assert RobotController("robot", "kuka", WAYPOINTS, home_yaw=-0.5).poses == first
    # another yaw is another problem
    with pytest.raises(AssertionError, match="solved again"):
        RobotController("robot", "kuka", WAYPOINTS, home_yaw=0.3)


def test_a_corrupt_cache_file_is_solved_again(ik_cache):
    first = RobotController("robot", "kuka", WAYPOINTS).poses
    (path,) = ik_cache.glob("*.json")
    path.write_text('{"poses": [[1.0, "x"]]}')
    robot_mod._solved.clear()
    assert RobotController("robot", "kuka", WAYPOINTS).poses == first
    assert json.loads(path.read_text())["poses"] == first


def test_an_unreachable_waypoint_is_refused_and_not_cached(ik_cache):
    with pytest.raises(ConfigurationError, match="out of reach"):
        RobotController("robot", "kuka", {"home": None, "far": [3.0, 0.0, 0.2]})
    assert not list(ik_cache.glob("*.json"))
