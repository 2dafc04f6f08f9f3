from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "Switchboard engine"
    default_auto_field = "django.db.models.BigAutoField"
