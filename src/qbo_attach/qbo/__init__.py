"""The QBO API client: HTTP calls, answers, and faults turned into exceptions."""

from qbo_attach.qbo.client import Attachable, QboClient, UploadResult, open_client

__all__ = ["Attachable", "QboClient", "UploadResult", "open_client"]
