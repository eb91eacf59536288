"""payg: a prepaid pay-as-you-go controller for wall sockets."""

__version__ = "0.1.0"  # pyproject.toml's version
