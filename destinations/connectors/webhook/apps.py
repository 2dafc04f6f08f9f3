from django.apps import AppConfig


class WebhookConfig(AppConfig):
    name = "destinations.connectors.webhook"
    label = "webhook_kind"
    verbose_name = "Webhook destinations"
