"""Co-simulation core: units, connections, the master, observers and manipulators."""
