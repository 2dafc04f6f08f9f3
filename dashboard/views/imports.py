"""Import billing customers: upload a CSV, choose its columns (a Stripe export needs no
choosing), preview what would change, import as a job."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import import_uploads
from dashboard.forms.imports import ImportMappingForm, ImportUploadForm
from dashboard.views.request_info import acting_user
from destinations.models import Upload
from destinations.people import imports

EXPIRED = "That upload has expired or was already imported; upload the file again."
PREVIEW_ROWS = 20
REFUSED_ROWS_SHOWN = 200


@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest) -> HttpResponse:
    posted = request.method == "POST"
    form = ImportUploadForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        upload = form.cleaned_data["file"]
        data = upload.read()
        try:
            imports.header(data)
        except imports.ImportRefused as exc:
            form.add_error("file", f"{upload.name}: {exc}.")
        else:
            token = import_uploads.stage_upload(name=upload.name, data=data)
            return redirect(f"{reverse('conflicts-import-preview')}?upload={token}")
    return render(request, "conflicts/import_upload.html", {"form": form})


@require_GET
def import_preview(request: HttpRequest) -> HttpResponse:
    """The columns used (guessed, or as chosen), and what importing with them would do."""
    token = request.GET.get("upload", "")
    upload = import_uploads.staged_upload(token)
    if upload is None:
        messages.error(request, EXPIRED)
        return redirect("conflicts-import")
    data = bytes(upload.content)
    try:
        columns = imports.header(data)
    except imports.ImportRefused as exc:
        messages.error(request, f"{upload.name}: {exc}.")
        return redirect("conflicts-import")
    guessed = imports.guess_mapping(columns)
    chosen = "mapped" in request.GET
    form = ImportMappingForm(
        request.GET if chosen else None, columns=columns, upload=token, initial=guessed
    )
    mapping = form.mapping() if chosen and form.is_valid() else (None if chosen else guessed)
    outcome: imports.Outcome | None = None
    refused = ""
    if mapping is not None:
        try:
            imports.check_mapping(columns, mapping)
            outcome = imports.preview(data, mapping, examples=PREVIEW_ROWS)
        except imports.ImportRefused as exc:
            # A guess that falls short is the column step, not an error: nothing was chosen yet.
            refused = str(exc) if chosen else ""
    context = preview_context(upload, columns, form, outcome, refused)
    context["recognised_stripe"] = is_stripe_export(columns)
    return render(request, "conflicts/import_preview.html", context)


@require_POST
def import_confirm(request: HttpRequest) -> HttpResponse:
    token = request.POST.get("upload", "")
    upload = import_uploads.staged_upload(token)
    if upload is None:
        messages.error(request, EXPIRED)
        return redirect("conflicts-import")
    try:
        columns = imports.header(bytes(upload.content))
    except imports.ImportRefused as exc:
        messages.error(request, f"{upload.name}: {exc}.")
        return redirect("conflicts-import")
    form = ImportMappingForm(request.POST, columns=columns, upload=token)
    if form.is_valid():
        try:
            job = import_uploads.import_staged(
                upload, mapping=form.mapping(), user=acting_user(request)
            )
        except imports.ImportRefused as exc:
            messages.error(request, f"{upload.name}: {exc}.")
        else:
            messages.success(request, f"Importing {upload.name}.")
            return redirect("conflicts-job", job_id=job.pk)
    query = request.POST.copy()
    query.pop("csrfmiddlewaretoken", None)
    query["mapped"] = "1"
    return redirect(f"{reverse('conflicts-import-preview')}?{query.urlencode()}")


def is_stripe_export(columns: list[str]) -> bool:
    return {imports.STRIPE_COLUMNS["billing_id"], imports.STRIPE_COLUMNS["email"]} <= set(columns)


def preview_context(
    upload: Upload,
    columns: list[str],
    form: ImportMappingForm,
    outcome: imports.Outcome | None,
    refused: str,
) -> dict[str, Any]:
    mapping = form.mapping() if form.is_bound and form.is_valid() else form.initial
    return {
        "upload": upload,
        "columns": columns,
        "form": form,
        "mapping": {
            imports.FIELDS[name]: column
            for name, column in mapping.items()
            if name in imports.FIELDS and column
        },
        "outcome": outcome,
        "refused": refused,
        "refused_rows": outcome.failed[:REFUSED_ROWS_SHOWN] if outcome else [],
        "refused_more": max(0, len(outcome.failed) - REFUSED_ROWS_SHOWN) if outcome else 0,
    }
