"""Kana: GraphQL requests, mapping rules, deliveries to the stand-in and dashboard pages."""
