from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "Switchboard engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from destinations import system_events
        from destinations.delivery.signals import deliveries_failed

        # The engine announces failures; system events, a layer above it, report them.
        deliveries_failed.connect(system_events.delivery_failed, dispatch_uid="system-events")
