"""The engine: events in (ingest), who they are about (identity, people), where they go (delivery,
connectors) and what is kept (models). It never imports the dashboard."""
