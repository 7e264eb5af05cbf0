"""What every Delivery Hub service shares: settings, database, outbox, inbox, broker, auth, errors."""
