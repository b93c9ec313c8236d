"""Linux key codes to characters, for USB HID barcode scanners that type like a keyboard.

A HID scanner sends key codes, not characters: which character a code means depends
on the keyboard layout the scanner was set up for (a German scanner types ``z`` with
the key a US keyboard calls ``y``). The tables below cover what barcodes hold:
letters, digits, punctuation, the keypad (NumLock on), and for ``de`` the AltGr
characters (``@ [ ] { } \\ ~ | €``). Dead keys (``´ ` ^`` on ``de``) are taken as the
character itself: a scanner never composes accents.

Key codes are the kernel's (``linux/input-event-codes.h``); they are a stable ABI.
"""

from __future__ import annotations

from typing import Literal

Layout = Literal["us", "de"]
LAYOUTS: tuple[Layout, ...] = ("us", "de")

KEY_TAB = 15
KEY_ENTER = 28
KEY_KPENTER = 96
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_CAPSLOCK = 58
KEY_RIGHTALT = 100  # AltGr on European layouts
# Keys that end a code: the scanner's suffix, Enter (main or keypad) or Tab.
SUFFIX_KEYS = frozenset({KEY_ENTER, KEY_KPENTER, KEY_TAB})
SHIFT_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
# Ctrl (left, right): Ctrl+] is GS, how a keyboard-wedge scanner types a GS1 label's
# FNC1 separator (edge/hid.py); Ctrl with any other key is a control character.
CTRL_KEYS = frozenset({29, 97})
# The key that is "]" on a US keyboard: with Ctrl it is GS on every layout (a scanner set
# to German may send it for Ctrl+] as it would on a US keyboard, where ] is AltGr+9).
KEY_RIGHTBRACE = 27
# Modifiers that change no character here (left Alt, Meta): ignored, not errors.
IGNORED_KEYS = frozenset({56, 125, 126, 69})  # left alt, metas, NumLock

# The rows of the main block: first key code of the row, then unshifted / shifted characters.
_ROWS: dict[Layout, tuple[tuple[int, str, str], ...]] = {
    "us": (
        (2, "1234567890-=", "!@#$%^&*()_+"),
        (16, "qwertyuiop[]", "QWERTYUIOP{}"),
        (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
        (43, "\\", "|"),
        (44, "zxcvbnm,./", "ZXCVBNM<>?"),
        (57, " ", " "),
        (86, "\\", "|"),
    ),
    "de": (
        (2, "1234567890ß´", '!"§$%&/()=?`'),
        (16, "qwertzuiopü+", "QWERTZUIOPÜ*"),
        (30, "asdfghjklöä^", "ASDFGHJKLÖÄ°"),
        (43, "#", "'"),
        (44, "yxcvbnm,.-", "YXCVBNM;:_"),
        (57, " ", " "),
        (86, "<", ">"),
    ),
}
# AltGr + key (German layout): the characters a code may hold.
_ALTGR: dict[Layout, dict[int, str]] = {
    "us": {},
    "de": {
        16: "@",
        18: "€",
        3: "²",
        4: "³",
        8: "{",
        9: "[",
        10: "]",
        11: "}",
        12: "\\",
        27: "~",
        86: "|",
        50: "µ",
    },
}
# The keypad (NumLock on): the same on every layout.
_KEYPAD = {
    71: "7",
    72: "8",
    73: "9",
    74: "-",
    75: "4",
    76: "5",
    77: "6",
    78: "+",
    79: "1",
    80: "2",
    81: "3",
    82: "0",
    83: ".",
    55: "*",
    98: "/",
}


def _tables(layout: Layout) -> tuple[dict[int, str], dict[int, str]]:
    plain: dict[int, str] = dict(_KEYPAD)
    shifted: dict[int, str] = dict(_KEYPAD)
    for first, lower, upper in _ROWS[layout]:
        for i, (lo, up) in enumerate(zip(lower, upper, strict=True)):
            plain[first + i] = lo
            shifted[first + i] = up
    return plain, shifted


class Keymap:
    """Characters of one layout; :meth:`char` answers for a key with the modifiers held."""

    def __init__(self, layout: Layout) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown keyboard layout {layout!r} (one of {LAYOUTS})")
        self.layout = layout
        self._plain, self._shifted = _tables(layout)
        self._altgr = _ALTGR[layout]

    def char(
        self, code: int, *, shift: bool, caps: bool = False, altgr: bool = False
    ) -> str | None:
        """The character ``code`` types, or None for a key this layout has no character for."""
        if altgr:
            return self._altgr.get(code)
        plain = self._plain.get(code)
        if plain is None:
            return None
        shifted = self._shifted[code]
        # Caps Lock shifts letters only (not ß, whose shifted key is '?')
        upper = shift != (caps and plain.isalpha() and shifted == plain.upper())
        return shifted if upper else plain
