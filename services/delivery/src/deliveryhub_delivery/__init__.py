"""The delivery service: deliveries and couriers, driven by order events."""
