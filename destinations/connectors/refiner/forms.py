"""Forms for the Refiner pages: a webhook receiver, the filters of the data lists, and the API
console. Field labels are the ones Refiner's own UI and its Make modules use, so an operator
moving between the two reads the same words."""

from __future__ import annotations

from typing import Any

from django import forms

from destinations.connectors.refiner.api import METHODS, ORDER_BY
from destinations.connectors.refiner.selectors import ContactQuery, ResponseQuery
from destinations.models import RefinerTrigger

ORDER_BY_LABELS = {
    "first_seen_at": "First seen",
    "last_seen_at": "Last seen",
    "last_form_submission_at": "Last survey submission",
}
FORM_LISTS = (
    ("all", "All"),
    ("published", "Published"),
    ("drafts", "Drafts"),
    ("archived", "Archived"),
)
DEFAULT_LIMIT = 50
# Percent-encoded dot, slash and backslash in a console path (see ConsoleForm.clean_url).
ENCODED_PATH_CHARACTERS = ("%2e", "%2f", "%5c")


class ReceiverForm(forms.Form):
    name = forms.CharField(
        label="Webhook Name",
        max_length=200,
        help_text="Give the webhook the same name in Refiner, so the two are easy to match.",
    )
    trigger = forms.ChoiceField(
        label="Trigger Event",
        choices=RefinerTrigger.choices,
        initial=RefinerTrigger.SURVEY_COMPLETED,
        help_text="Choose the same trigger in Refiner. Calls for other triggers are logged "
        "and ignored.",
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        return name


def uuid_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "any", "spellcheck": "false"}),
    )


def limit_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Limit",
        required=False,
        min_value=1,
        max_value=1000,
        initial=DEFAULT_LIMIT,
        widget=forms.NumberInput(attrs={"placeholder": str(DEFAULT_LIMIT)}),
    )


class ContactFilterForm(forms.Form):
    """Refiner's List Contacts: Order by, Form UUID, Segment UUID, Limit; plus search."""

    search = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "email, id or name"}),
    )
    order_by = forms.ChoiceField(
        label="Order by",
        required=False,
        choices=[(key, ORDER_BY_LABELS.get(key, key)) for key in ORDER_BY],
    )
    form_uuid = uuid_field("Form UUID")
    segment_uuid = uuid_field("Segment UUID")
    limit = limit_field()
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def query(self) -> ContactQuery | None:
        """What to ask Refiner for; None while a field is invalid (its error is shown)."""
        if not self.is_bound:
            return ContactQuery()
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return ContactQuery(
            order_by=data["order_by"] or ORDER_BY[0],
            form_uuid=data["form_uuid"],
            segment_uuid=data["segment_uuid"],
            limit=data["limit"] or DEFAULT_LIMIT,
            search=data["search"],
            cursor=data["cursor"],
        )


class ResponseFilterForm(forms.Form):
    form_uuid = uuid_field("Form UUID")
    segment_uuid = uuid_field("Segment UUID")
    limit = limit_field()
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def query(self) -> ResponseQuery | None:
        if not self.is_bound:
            return ResponseQuery()
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return ResponseQuery(
            form_uuid=data["form_uuid"],
            segment_uuid=data["segment_uuid"],
            limit=data["limit"] or DEFAULT_LIMIT,
            cursor=data["cursor"],
        )


class FormListForm(forms.Form):
    which = forms.ChoiceField(label="Show", required=False, choices=FORM_LISTS)

    def which_value(self) -> str:
        if self.is_bound and self.is_valid():
            return str(self.cleaned_data["which"] or "all")
        return "all"


class ConsoleForm(forms.Form):
    """Refiner's "Make an API Call": the URL is relative to the API, the key is added for you."""

    url = forms.CharField(
        label="URL",
        max_length=2000,
        initial="/contacts",
        help_text="Relative to the API's Base URL, e.g. /contacts or /contact?email=…",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    method = forms.ChoiceField(label="Method", choices=[(m, m) for m in METHODS], initial="GET")
    headers = forms.CharField(
        label="Headers",
        required=False,
        help_text="One per line: Name: value. Authorization is added for you.",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
    )
    query = forms.CharField(
        label="Query String",
        required=False,
        max_length=4000,
        help_text="e.g. page_length=5&order_by=last_seen_at",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    body = forms.CharField(
        label="Body",
        required=False,
        strip=False,
        help_text="JSON, sent as application/json.",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
    )

    def clean_url(self) -> str:
        """The service refuses ``..`` and ``.`` segments but reads ``%2e%2e`` as a name; a
        server or proxy in front of the API may decode and resolve it, leaving the Base URL. So
        encoded dots, slashes and backslashes are refused here, before the service is asked."""
        url: str = self.cleaned_data["url"]
        path = url.split("?", 1)[0].lower()
        if any(encoded in path for encoded in ENCODED_PATH_CHARACTERS):
            raise forms.ValidationError(
                "The URL must not contain an encoded dot, slash or backslash (%2e, %2f, %5c)."
            )
        return url

    def call_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "method": data["method"],
            "path": data["url"],
            "query": data["query"],
            "headers": data["headers"],
            "body": data["body"],
        }
