"""Kana: the connector (users with billing ids, feature usage), mapping rules from events to
features, their retroactive reprocessing and the unmapped-events view."""

KIND = "kana"
