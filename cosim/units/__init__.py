"""Unit adapters: FMUs (fmpy), the PyBullet arm, and the Python unit base."""
