"""The dashboard's views, a module per page area: read with selectors, change with services."""
