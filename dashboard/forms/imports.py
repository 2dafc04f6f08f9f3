"""The billing-customer CSV import: the upload, then which column is which."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms

from destinations.people import imports

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A Stripe customers export is recognised by its columns; for any other CSV "
        "you choose which column holds what.",
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size // (1024 * 1024)} MB; at most "
                f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB can be imported at once. Split it."
            )
        return upload


class ImportMappingForm(forms.Form):
    """Which column of the file holds each field; the choices are the file's own columns."""

    upload = forms.CharField(widget=forms.HiddenInput)

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        columns: Sequence[str],
        upload: str,
        initial: Mapping[str, str] | None = None,
    ):
        super().__init__(data, initial={"upload": upload, **(initial or {})})
        options = [("", "— not in this file —"), *((c, c) for c in columns if c)]
        for name, label in imports.FIELDS.items():
            self.fields[name] = forms.ChoiceField(required=False, choices=options, label=label)

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data[name] for name in imports.FIELDS if self.cleaned_data[name]}

    def mapping_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in imports.FIELDS]
