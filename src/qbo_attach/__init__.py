"""Move the attached documents of a QuickBooks Desktop company into QBO.

The pipeline runs in stages, one module each: ``inventory`` walks the legacy
tree, ``mapping`` fetches the conversion's id mapping, ``verify`` joins the two
and classifies every file, ``upload`` attaches what passed, and ``check``
compares the remote with the logs.
"""

__version__ = "0.1.0"
