"""What QBO accepts: file extensions, their MIME types, size and entity types.

Intuit publishes none of these limits on its reference pages; they come from
integrators' documentation and Intuit's own tooling (see docs in qbo-api.md).
"""

from __future__ import annotations

MAX_FILE_BYTES = 100 * 1024 * 1024

# Extension (lower case, no dot) -> the MIME type sent to QBO.
ACCEPTED_TYPES: dict[str, str] = {
    "ai": "application/postscript",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "eps": "application/postscript",
    "gif": "image/gif",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "pages": "application/vnd.apple.pages",
    "pdf": "application/pdf",
    "png": "image/png",
    "rtf": "application/rtf",
    "tif": "image/tiff",
    "txt": "text/plain",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xml": "text/xml",
}

# QBO refuses this content type, so the tool never sends it.
UNKNOWN_CONTENT_TYPE = "application/octet-stream"

# QBO entity types seen accepting attachments (names are case-sensitive).
ATTACHABLE_ENTITY_TYPES = frozenset(
    {
        "Invoice",
        "Bill",
        "Purchase",
        "PurchaseOrder",
        "Estimate",
        "SalesReceipt",
        "CreditMemo",
        "JournalEntry",
        "Deposit",
        "VendorCredit",
        "Payment",
        "BillPayment",
        "Customer",
        "Vendor",
        "Item",
        "Employee",
    }
)


def extension_of(file_name: str) -> str:
    """The lower-case extension without its dot, or "" when there is none."""
    stem, dot, ext = file_name.rpartition(".")
    if not dot or not stem:
        return ""
    return ext.lower()


def content_type_for(file_name: str) -> str:
    """The MIME type QBO expects for a file name, or the octet-stream marker."""
    return ACCEPTED_TYPES.get(extension_of(file_name), UNKNOWN_CONTENT_TYPE)
