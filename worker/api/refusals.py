"""What a send script refused (``sends.Refused``), as the API's error: the refusals both
send routes share, and the route's own, in one place per route. The scripts only name the
problem; the words, status and code are the API's, the same as when the checks were made
one by one in Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from worker.codes import Code
from worker.errors import Rejected
from worker.store.sends import Refused

# A problem's error, given the refusal's detail.
Refusals = Mapping[str, Callable[[str], Rejected]]


# The key is checked inside the send script when it came from memory (``Sender.confirmed``
# False): the same answers as ``deps._usable`` gives when it reads the key itself.
def _opted_out(stored: str) -> Rejected:
    """``stored``: the opt-out that refused the send, ``channel:category`` (``*``: every)."""
    channel, _, category = stored.partition(":")
    what = {
        ("*", "*"): "every send but transactional ones",
        ("*", category): f"{category} on every channel",
        (channel, "*"): f"every {channel} send",
    }.get((channel, category), f"{channel} {category}")
    return Rejected(
        Code.RECIPIENT_OPTED_OUT,
        f"The recipient opted out of {what}; nothing was sent",
        field="category",
        opted_out={
            "channel": None if channel == "*" else channel,
            "category": None if category == "*" else category,
        },
    )


SHARED: Refusals = {
    "key_invalid": lambda _: Rejected(Code.UNAUTHORIZED, "Invalid API key"),
    "key_revoked": lambda _: Rejected(Code.UNAUTHORIZED, "This API key has been revoked"),
    "recipient_opted_out": _opted_out,
}


def raise_refusal(refused: Refused, own: Refusals) -> None:
    """Raise the error for ``refused``: the route's own (``own``) or a shared one. Returns
    only for a problem neither knows (the route words it otherwise)."""
    make = own.get(refused.problem) or SHARED.get(refused.problem)
    if make is not None:
        raise make(refused.detail)
