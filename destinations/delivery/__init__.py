"""The delivery engine: which destinations get an event (routing), sending with retries
(engine), finding work whose wake-up was lost (sweeper), and the operator's actions (services)."""
