"""The interactive service of seed 001: read, like and collect counters per
article, counted from read events in batches, kept in a table with upserts and
cached in a hash that is only incremented where it exists.
Uses only herald's public API."""
