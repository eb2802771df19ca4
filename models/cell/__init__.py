"""The smart-factory cell: scene, robot controller, PLC, HMI and accounting."""
