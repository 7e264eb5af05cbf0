"""The web console: customers order and follow, managers appoint, couriers deliver."""
