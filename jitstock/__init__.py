"""jitstock: load cells and scanners to live stock levels and Just-in-Time supplier orders."""

__version__ = "0.1.0"
