"""Notifications: messages about finished runs, sent from the events outbox."""
