"""Pictures of the cell: frames from PyBullet's CPU renderer, a frame-grabbing observer, PNG/GIF.

``render_frame`` uses ``ER_TINY_RENDERER`` on the scene's own client (no display, no OpenGL),
so it works on a headless machine and never touches another unit's world. Rendering only
reads the world (and recolours parts by state: orange raw, green pressed), so recording
frames does not change the simulation.

    recorder = FrameRecorder("cell", every=10)       # one frame per 10 ticks
    master.add_observer(recorder)
    master.run(20.0)
    write_gif(recorder.frames, "cell.gif", fps=10)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pybullet

from cosim.core.observer import Observer
from cosim.errors import ConfigurationError

if TYPE_CHECKING:
    from cosim.core.master import Master

__all__ = ["CAMERAS", "FrameRecorder", "render_frame", "write_gif", "write_pngs"]

# Named viewpoints: target (x, y, z), distance (m), yaw and pitch (deg), vertical field of view (deg).
CAMERAS: dict[str, dict[str, Any]] = {
    "iso": {"target": (0.0, 0.0, 0.35), "distance": 2.3, "yaw": 50.0, "pitch": -30.0, "fov": 50.0},
    "top": {"target": (0.0, 0.0, 0.0), "distance": 2.2, "yaw": 0.0, "pitch": -89.0, "fov": 50.0},
    "side": {"target": (0.0, 0.0, 0.35), "distance": 2.3, "yaw": 140.0, "pitch": -25.0, "fov": 50.0},
}


def _camera(camera: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if camera is None:
        return dict(CAMERAS["iso"])
    if isinstance(camera, str):
        try:
            return dict(CAMERAS[camera])
        except KeyError:
            raise ConfigurationError(f"unknown camera '{camera}'; known: {', '.join(CAMERAS)}") from None
    unknown = set(camera) - set(CAMERAS["iso"])
    if unknown:
        raise ConfigurationError(f"unknown camera setting(s) {sorted(unknown)}; use {sorted(CAMERAS['iso'])}")
    return {**CAMERAS["iso"], **camera}


def render_frame(scene: Any, width: int = 480, height: int = 360,
                 camera: str | Mapping[str, Any] | None = None) -> np.ndarray:
    """Render the scene's world now; returns an ``(height, width, 3)`` ``uint8`` RGB array.

    Args:
        scene: a :class:`~models.cell.scene.CellScene` (or any unit with a ``client``).
        width, height: image size in pixels.
        camera: a name from :data:`CAMERAS` or a dict with any of ``target``, ``distance``,
            ``yaw``, ``pitch``, ``fov`` (defaults from ``"iso"``).
    """
    if int(width) < 1 or int(height) < 1:
        raise ConfigurationError(f"image size must be positive, got {width}x{height}")
    cam = _camera(camera)
    if hasattr(scene, "sync_colors"):
        scene.sync_colors()
    client = scene.client
    view = client.computeViewMatrixFromYawPitchRoll(
        cameraTargetPosition=list(cam["target"]), distance=float(cam["distance"]),
        yaw=float(cam["yaw"]), pitch=float(cam["pitch"]), roll=0.0, upAxisIndex=2)
    proj = client.computeProjectionMatrixFOV(fov=float(cam["fov"]), aspect=width / height,
                                             nearVal=0.05, farVal=20.0)
    _, _, rgba, _, _ = client.getCameraImage(int(width), int(height), view, proj,
                                             lightDirection=[1.0, -0.6, 2.0], shadow=1,
                                             renderer=pybullet.ER_TINY_RENDERER)
    image = np.asarray(rgba, dtype=np.uint8).reshape(int(height), int(width), 4)
    return np.ascontiguousarray(image[:, :, :3])


class FrameRecorder(Observer):
    """Grabs a frame of the scene unit every ``every`` ticks (and one at the start).

    Args:
        unit: name of the scene unit in the master.
        every: period in ticks.
        width, height, camera: as for :func:`render_frame`.
        max_frames: stop grabbing after this many frames (``None``: no limit).

    Attributes:
        frames: the images, ``(height, width, 3)`` ``uint8`` arrays.
        ticks: the tick of each frame.
    """

    def __init__(self, unit: str = "cell", every: int = 10, width: int = 480, height: int = 360,
                 camera: str | Mapping[str, Any] | None = None, max_frames: int | None = None) -> None:
        if int(every) != every or every < 1:
            raise ConfigurationError(f"frame recorder: 'every' must be a positive integer, got {every!r}")
        self.unit = unit
        self.every = int(every)
        self.width, self.height = int(width), int(height)
        self.camera = _camera(camera)
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self.ticks: list[int] = []
        self._scene: Any = None

    def on_start(self, master: Master) -> None:
        scene = master.units.get(self.unit)
        if scene is None:
            raise ConfigurationError(f"frame recorder: no unit '{self.unit}'; units: {', '.join(master.units)}")
        if not hasattr(scene, "client"):
            raise ConfigurationError(f"frame recorder: unit '{self.unit}' has no PyBullet world to render")
        self._scene = scene
        self.frames, self.ticks = [], []
        self._grab(master.tick)

    def after_step(self, tick: int) -> None:
        if tick % self.every == 0:
            self._grab(tick)

    def _grab(self, tick: int) -> None:
        if self.max_frames is not None and len(self.frames) >= self.max_frames:
            return
        self.frames.append(render_frame(self._scene, self.width, self.height, self.camera))
        self.ticks.append(tick)

    def write(self, directory: str | Path, fps: float = 10.0) -> dict[str, str]:
        """Write the frames as PNGs under ``frames/`` and as ``cell.gif``; returns the paths."""
        if not self.frames:
            return {}
        directory = Path(directory)
        pngs = write_pngs(self.frames, directory / "frames")
        gif = write_gif(self.frames, directory / "cell.gif", fps)
        return {"frames": str(pngs[0].parent), "gif": str(gif)}

    def save_state(self) -> int:
        return len(self.frames)

    def restore_state(self, state: int) -> None:
        del self.frames[state:]
        del self.ticks[state:]


def write_pngs(frames: Sequence[np.ndarray], directory: str | Path, prefix: str = "frame") -> list[Path]:
    """Write one PNG per frame (``<prefix>_00000.png``...); returns the paths."""
    from PIL import Image

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(frames):
        path = out / f"{prefix}_{k:05d}.png"
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write the frames as an animated GIF (looping) at ``fps`` frames per second."""
    from PIL import Image

    if not frames:
        raise ConfigurationError("write_gif: no frames to write")
    if not fps > 0:
        raise ConfigurationError(f"write_gif: fps must be positive, got {fps!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)),
                   loop=0, optimize=False)
    return path
