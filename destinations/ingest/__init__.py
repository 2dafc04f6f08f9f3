"""The Segment HTTP Tracking API (/v1): authentication by write key, rate limits, and storing
what it accepts (resolved, routed and planned for delivery in the same transaction)."""
