"""`createsource` and `adddestination`: what the dashboard does, from a shell."""
