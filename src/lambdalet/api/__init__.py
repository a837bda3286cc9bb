"""The AWS-compatible front door: Lambda REST API, CloudWatch Logs subset, function URLs."""

from lambdalet.api.app import ConfigError, FrontDoor, Settings

__all__ = ["ConfigError", "FrontDoor", "Settings"]
