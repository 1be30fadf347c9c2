"""The jobs service of seed 003: scheduled jobs (interval and cron) send
user-sync events keyed by user and order-notify events through typed
senders, plus one delayed send; consumers count what arrived.
Uses only herald's public API."""
