"""Refiner: its requests, deliveries to the stand-in, dashboard pages and inbound hooks."""
