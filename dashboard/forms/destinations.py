"""The destination settings form, generated from the connector's ``settings_fields``.

Secret fields are write-only: the input is always rendered empty, its placeholder shows the
masked stored value, and leaving it blank keeps what is stored. The exception is a secret
Switchboard generates for the operator (a webhook's signing secret): it is shown in clear while
it is new, because the operator has to copy it to the other side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from django import forms

from destinations.connectors.webhook.connector import new_signing_secret
from destinations.crypto import mask
from destinations.delivery.contract import Connector, SettingField
from destinations.delivery.http import private_urls_rule
from destinations.models import Destination

KEEP_SECRET_HELP = "Saved. Leave blank to keep it; type a new value to replace it."
NEW_SECRET_HELP = (
    "New secret, saved when you save. It is shown once more after saving: copy it into the "
    "receiving side to verify signatures."
)
# Secrets Switchboard makes rather than a service issues, by setting name: the form offers a
# Generate button for them, and shows a new one once after saving.
GENERATED_SECRETS: dict[str, Callable[[], str]] = {"signing_secret": new_signing_secret}


def generated_secret_name(connector: Connector) -> str | None:
    """The connector's secret setting Switchboard generates, if it has one."""
    return next(
        (f.name for f in connector.settings_fields if f.secret and f.name in GENERATED_SECRETS),
        None,
    )


def generate_secret(name: str) -> str:
    return GENERATED_SECRETS[name]()


# A generous ceiling, only to catch a slip of the keyboard: no destination takes this many.
RATE_LIMIT_MAX = 1_000_000
RATE_LIMIT_ERROR = "Enter a whole number of requests per minute, 1 or more, or leave it blank."


def rate_limit_help(connector: Connector) -> str:
    """Names what blank means for this kind: the connector's own limit, or none."""
    default = connector.requests_per_minute
    name = connector.display_name
    if default:
        return f"Leave blank for {name}'s default, {default:,} requests per minute."
    return f"Leave blank for {name}'s default: no limit."


class DestinationForm(forms.Form):
    name = forms.CharField(max_length=200)
    enabled = forms.BooleanField(required=False, initial=True)
    # Blank is stored as 0, which the engine reads as the connector's default.
    rate_limit_per_minute = forms.IntegerField(
        label="Rate limit (requests per minute)",
        required=False,
        min_value=1,
        max_value=RATE_LIMIT_MAX,
        error_messages={"invalid": RATE_LIMIT_ERROR, "min_value": RATE_LIMIT_ERROR},
    )

    def __init__(
        self,
        *args: Any,
        connector: Connector,
        instance: Destination | None = None,
        stored_secrets: Mapping[str, str] | None = None,
        reveal: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        if instance is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": instance.name,
                    "enabled": instance.enabled,
                    "rate_limit_per_minute": instance.rate_limit_per_minute or None,
                    **instance.settings,
                },
            )
        super().__init__(*args, **kwargs)
        self.fields["rate_limit_per_minute"].help_text = rate_limit_help(connector)
        self.connector = connector
        self.instance = instance
        self.stored_secrets = dict(stored_secrets or {})
        # Secret fields rendered in clear: a generated secret the operator still has to copy.
        self.reveal = frozenset(reveal)
        for setting in connector.settings_fields:
            self.fields[setting.name] = self._setting_field(setting)
        # The rate limit after the connector's settings, but before a secret Switchboard
        # generates: the page puts the Generate button after the last field.
        generated = generated_secret_name(connector)
        self.order_fields(
            [name for name in self.fields if name not in ("rate_limit_per_minute", generated)]
            + ["rate_limit_per_minute"]
        )

    def _setting_field(self, setting: SettingField) -> forms.Field:
        if setting.secret and setting.name in self.reveal:
            return forms.CharField(
                label=setting.label,
                required=setting.required and not self.stored_secrets.get(setting.name),
                strip=True,
                widget=forms.TextInput(
                    attrs={"autocomplete": "off", "spellcheck": "false", "class": "secret-new"}
                ),
                help_text=NEW_SECRET_HELP,
            )
        if setting.secret:
            stored = self.stored_secrets.get(setting.name, "")
            attrs = {"autocomplete": "new-password"}
            if stored:
                attrs["placeholder"] = mask(stored)
            widget = forms.PasswordInput(render_value=False, attrs=attrs)
            return forms.CharField(
                label=setting.label,
                required=setting.required and not stored,
                strip=True,
                widget=widget,
                help_text=KEEP_SECRET_HELP if stored else setting.help,
            )
        if setting.choices:
            return forms.ChoiceField(
                label=setting.label,
                choices=setting.choices,
                required=setting.required,
                initial=setting.default,
                help_text=setting.help,
            )
        field_class: type[forms.CharField] = forms.CharField
        extra: dict[str, Any] = {}
        help_text = setting.help or (f"Default: {setting.default}" if setting.default else "")
        if setting.name == "url" or setting.name.endswith("_url"):
            field_class, extra = forms.URLField, {"assume_scheme": "https"}
            # One rule for every URL Switchboard calls (decision 23): say it where it is typed.
            help_text = f"{help_text}. {private_urls_rule()}" if help_text else private_urls_rule()
        return field_class(
            label=setting.label,
            # Blank falls back to the declared default, so only a field without one is required.
            required=setting.required and not setting.default,
            initial=setting.default,
            help_text=help_text,
            **extra,
        )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        clash = Destination.objects.filter(name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"A destination named {name!r} already exists.")
        return name

    def service_values(self) -> dict[str, Any]:
        """What destination_create and destination_update take from the form."""
        return {
            "name": self.cleaned_data["name"],
            "enabled": self.cleaned_data["enabled"],
            "settings_values": self.settings_values(),
            "secret_values": self.secret_values(),
            "rate_limit_per_minute": self.rate_limit(),
        }

    def rate_limit(self) -> int:
        """Requests per minute as stored: 0 (blank) for the connector's default."""
        return int(self.cleaned_data.get("rate_limit_per_minute") or 0)

    def settings_values(self) -> dict[str, str]:
        return {
            f.name: self.cleaned_data.get(f.name) or ""
            for f in self.connector.settings_fields
            if not f.secret
        }

    def secret_values(self) -> dict[str, str]:
        """Only what was typed: a blank secret keeps the stored one."""
        return {
            f.name: self.cleaned_data.get(f.name) or ""
            for f in self.connector.settings_fields
            if f.secret
        }

    def new_generated_secret(self) -> tuple[str, str] | None:
        """(label, value) of a generated secret entered in this form, to show once after saving."""
        name = generated_secret_name(self.connector)
        value = self.secret_values().get(name, "") if name else ""
        return (str(self.fields[name].label), value) if name and value else None

    def connection_config(self) -> tuple[dict[str, str] | None, str]:
        """The settings as a connector reads them, for Test connection: typed values, the stored
        secret where the field was left blank, defaults for blank settings. Returns (None,
        problem) when a setting itself is invalid; the name is not needed to test."""
        self.is_valid()
        problems = [
            f"{self.fields[f.name].label}: {' '.join(str(e) for e in self.errors[f.name])}"
            for f in self.connector.settings_fields
            if f.name in self.errors
        ]
        if problems:
            return None, " ".join(problems)
        config: dict[str, str] = {}
        for setting in self.connector.settings_fields:
            typed = self.cleaned_data.get(setting.name) or ""
            if setting.secret:
                config[setting.name] = typed or self.stored_secrets.get(setting.name, "")
            else:
                config[setting.name] = typed or setting.default
        return config, ""
