"""The todo flow of seed 002: a todo service publishes what happened to todos;
notification and analytics services react. Uses only herald's public API."""
