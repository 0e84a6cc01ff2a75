"""A fake QuickBooks Online: an HTTP server that answers like QBO, failures too.

``FakeCompany`` holds the companies' state in SQLite, ``create_app`` serves it
as an ASGI app (in-process through httpx, or under uvicorn with ``serve``).
"""

from qbo_attach.fake.app import FaultSettings, create_app, serve
from qbo_attach.fake.store import FakeCompany

__all__ = ["FakeCompany", "FaultSettings", "create_app", "serve"]
