"""Kana mapping rules: which feature a track event without ``properties.featureId`` counts as."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class MappingRule(models.Model):
    """Conditions, all ANDed: at most one on the event name, any number on property paths
    (``destinations.conditions``). The enabled rule with the lowest position that matches wins."""

    destination = models.ForeignKey(
        "destinations.Destination", on_delete=models.CASCADE, related_name="mapping_rules"
    )
    position = models.PositiveIntegerField(default=0)
    event_name = models.CharField(max_length=255, blank=True, default="")
    conditions = models.JSONField(default=list, blank=True)
    feature_id = models.CharField(max_length=255)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["destination", "position"], name="mapping_rule_order_idx")]

    def __str__(self) -> str:
        return f"rule {self.pk} -> {self.feature_id}"

    def all_conditions(self) -> list[dict[str, Any]]:
        """The event-name condition first (cheapest, most selective), then property ones."""
        name = [{"path": "event", "op": "equals", "value": self.event_name}]
        return (name if self.event_name else []) + list(self.conditions or [])
