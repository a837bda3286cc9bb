"""The AWS-compatible front door: Lambda REST API, CloudWatch Logs subset, function URLs."""

from lambdalet.api.app import FrontDoor, Settings

__all__ = ["FrontDoor", "Settings"]
