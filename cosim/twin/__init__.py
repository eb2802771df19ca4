"""The twin layer: replicas of plant units, synchronisation from telemetry, sandbox, integrity."""
