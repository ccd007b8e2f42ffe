"""dlaas-tui: deep-learning training as a service, driven from the terminal."""

__version__ = "0.1.0"
