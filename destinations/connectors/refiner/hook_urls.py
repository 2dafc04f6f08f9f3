from django.urls import path

from destinations.connectors.refiner.hook_views import refiner_webhook

urlpatterns = [
    path("refiner/<uuid:public_id>", refiner_webhook, name="refiner-webhook"),
]
