"""What is simulated: station FMU sources (C and pythonfmu) and the FMU builder.

Build an FMU with :func:`models.build.build_fmu` (cached by content hash) or from the
command line: ``python -m models.build conveyor --fmi 3.0``.
"""
