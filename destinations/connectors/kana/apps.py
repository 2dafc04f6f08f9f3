from django.apps import AppConfig


class KanaConfig(AppConfig):
    name = "destinations.connectors.kana"
    label = "kana_kind"
    verbose_name = "Kana destinations"
