"""A SendGrid personalization as a JSON fragment, written without building a dict per reader.

Its own module, apart from ``digest.send.sendgrid``, because the personalization worker process
(``digest.send.personalize``) needs it and nothing else of the send side: importing the
``sendgrid`` library costs a process about 18 MB, which the worker no longer pays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from digest.send.headers import ONE_CLICK, list_unsubscribe
from digest.textclean import header_text

_LINK = "__DIGEST_LINK__"  # where the reader's link goes in the pre-encoded header


class PersonalizationWriter:
    """One recipient's personalization as a JSON fragment, from keys encoded once per send.

    Produces what ``batch_body`` gives for a Recipient with the two personal links as
    substitutions, List-Unsubscribe headers and ``subscriber_id`` in custom args (the same keys
    and values) without building a dict, or a Recipient, per reader.
    """

    def __init__(
        self, *, preferences_token: str, unsubscribe_token: str, mailto: str, shared_args: Mapping[str, str]
    ) -> None:
        self._pref_key = json.dumps(preferences_token)
        self._unsub_key = json.dumps(unsubscribe_token)
        # The header as digest.send.headers builds it, JSON-encoded once around the reader's link.
        before, _, after = json.dumps(list_unsubscribe(_LINK, mailto))[1:-1].partition(_LINK)
        self._header_before, self._header_after = before, after
        args = json.dumps(dict(shared_args), separators=(",", ":"))[1:-1]
        self._args = args + "," if args else ""

    def fragment(
        self,
        email: str,
        name: str,
        preferences_url: str,
        unsubscribe_url: str,
        subscriber_id: int,
        extra: str = "",
    ) -> str:
        """The personal URLs are https URLs with base64url tokens: nothing in them needs escaping.

        ``extra``: more substitutions, JSON-encoded, each with a leading comma (reader fields).
        """
        to = json.dumps(email) if ('"' in email or "\\" in email) else f'"{email}"'
        if name:
            to += f',"name":{json.dumps(clean_name(name))}'
        return (
            f'{{"to":[{{"email":{to}}}],"substitutions":{{{self._pref_key}:"{preferences_url}",'
            f'{self._unsub_key}:"{unsubscribe_url}"{extra}}},"headers":{{"List-Unsubscribe":"{self._header_before}'
            f'{unsubscribe_url}{self._header_after}","List-Unsubscribe-Post":"{ONE_CLICK}"}},'
            f'"custom_args":{{{self._args}"subscriber_id":"{subscriber_id}"}}}}'
        )


def clean_name(name: str) -> str:
    """SendGrid refuses ';' and ',' in a recipient name; a name is plain text (no encoded-word, bidi)."""
    return " ".join(header_text(name).replace(";", " ").replace(",", " ").split())
