"""Formats of the original design's card."""

from django import template

register = template.Library()


@register.filter
def clock(seconds):
    """`01:30` under an hour, `1:02:03` from an hour on (the original card's `Durée`)."""
    try:
        total = max(0, int(round(float(seconds))))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"
