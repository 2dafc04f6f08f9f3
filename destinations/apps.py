from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "Switchboard engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from destinations import system_events
        from destinations.audiences import live
        from destinations.delivery.signals import deliveries_failed
        from destinations.ingest.signals import events_stored

        # Lower layers announce; the layers above them listen. The engine's failures become
        # system events, and users touched by ingest are re-evaluated for audiences.
        deliveries_failed.connect(system_events.delivery_failed, dispatch_uid="system-events")
        events_stored.connect(live.on_events_stored, dispatch_uid="audiences")
