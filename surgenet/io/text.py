"""Reading a user's text files (CSV, JSON, YAML, lists): UTF-8 with or without a BOM, or one line.

Spreadsheet programs write CSVs in the system's code page (cp1252, Latin-1) on many systems,
or UTF-8 with a byte-order mark. The BOM is dropped; any other encoding is refused with the
file, the first byte that is not UTF-8 and how to save the file again, never a traceback.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from ..exceptions import InputError

__all__ = ["read_user_text", "decode_user_text"]

SAVE_AS_UTF8 = "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8')"


def decode_user_text(data: bytes, source: str | Path) -> str:
    """``data`` (the contents of ``source``) as text; an :class:`InputError` if it is not UTF-8."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        raise InputError(f"{source} is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); "
                         f"{SAVE_AS_UTF8}.") from exc


def read_user_text(path: str | Path) -> str:
    """The text of a file a user gave (UTF-8, a leading BOM removed; line endings as in the file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path} does not exist.") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path} is a folder, not a text file.") from exc
    except PermissionError as exc:
        raise InputError(f"{path} cannot be read (permission denied).") from exc
    return decode_user_text(data, path)
