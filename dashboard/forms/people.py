"""The Users and Accounts search."""

from __future__ import annotations

from django import forms


class SearchForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
