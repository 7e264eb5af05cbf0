"""Delivery Hub's broker contract: the event envelope, the typed payloads and the topology names."""
