from django.apps import AppConfig


class RefinerConfig(AppConfig):
    name = "destinations.connectors.refiner"
    label = "refiner_kind"
    verbose_name = "Refiner destinations"
