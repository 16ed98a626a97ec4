"""The update window: when automatic updates (and the reboot they may need) are allowed.

One grammar for the deploy (validation, the timer's OnCalendar) and the host (gitea-update auto
checks it is inside the window before it changes anything): `DAYS HH:MM-HH:MM` in the host's
time zone, DAYS `*` or a comma list of Mon Tue Wed Thu Fri Sat Sun. An end before the start runs
past midnight (Sat 23:00-01:00 ends Sunday 01:00). Stdlib only: it runs on the host too.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW = re.compile(r"(\*|[A-Z][a-z]{2}(?:,[A-Z][a-z]{2})*) ([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])")


@dataclass(frozen=True)
class Window:
    days: tuple[str, ...]  # the days the window opens on
    start: int  # minutes after midnight
    end: int  # minutes after midnight; <= start: the next day

    @property
    def minutes(self) -> int:
        return (self.end - self.start) % (24 * 60) or 24 * 60


def parse_window(text: str) -> Window:
    """ValueError, saying what is wrong, for anything but the grammar above."""
    match = _WINDOW.fullmatch(text or "")
    if not match:
        raise ValueError(f"update window {text!r} is not DAYS HH:MM-HH:MM (e.g. 'Sun 03:00-05:00', '* 02:00-03:00')")
    days = DAYS if match[1] == "*" else tuple(match[1].split(","))
    unknown = [d for d in days if d not in DAYS]
    hours, minutes = (int(match[2]), int(match[4])), (int(match[3]), int(match[5]))
    if unknown or len(set(days)) != len(days):
        raise ValueError(f"update window {text!r}: days are {', '.join(DAYS)} or *, each once")
    if max(hours) > 23 or (hours[0], minutes[0]) == (hours[1], minutes[1]):
        raise ValueError(f"update window {text!r}: times are 00:00-23:59 and the window must not be empty")
    return Window(days, hours[0] * 60 + minutes[0], hours[1] * 60 + minutes[1])


def is_open(window: Window, now: datetime.datetime) -> bool:
    """Is `now` (the host's local time) inside the window?"""
    for back in (0, 1):  # opened today, or yesterday and runs past midnight
        day = now - datetime.timedelta(days=back)
        opened = day.replace(hour=window.start // 60, minute=window.start % 60, second=0, microsecond=0)
        if DAYS[day.weekday()] in window.days and opened <= now < opened + datetime.timedelta(minutes=window.minutes):
            return True
    return False


def on_calendar(window: Window) -> str:
    """systemd's OnCalendar= for the window's opening."""
    days = "" if window.days == DAYS else ",".join(window.days) + " "
    return f"{days}*-*-* {window.start // 60:02d}:{window.start % 60:02d}:00"
