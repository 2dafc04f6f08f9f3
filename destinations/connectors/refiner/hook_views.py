"""``POST /hooks/refiner/<receiver id>``: where a Refiner webhook posts."""

from __future__ import annotations

import uuid

import orjson
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from destinations.connectors.refiner.inbound import MAX_BODY, handle_call
from destinations.models import RefinerReceiver


@csrf_exempt
@login_not_required
def refiner_webhook(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    if request.method != "POST":
        response = HttpResponse(
            orjson.dumps({"success": False, "error": f"Use POST, not {request.method}"}),
            status=405,
            content_type="application/json",
        )
        response["Allow"] = "POST"
        return response
    receiver = RefinerReceiver.objects.filter(public_id=public_id).first()
    raw = request.read(MAX_BODY + 1)
    answer = handle_call(receiver, request.META.get("HTTP_AUTHORIZATION", ""), raw)
    return HttpResponse(
        orjson.dumps(answer.body), status=answer.status, content_type="application/json"
    )
