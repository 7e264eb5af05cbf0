"""The orders service: customers place, pay and cancel orders and follow their delivery."""
