"""lambdalet: a self-hosted, AWS-Lambda-compatible function platform."""

__version__ = "0.1.0"
