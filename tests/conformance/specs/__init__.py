"""One module per broker adapter, each defining `SPEC: BrokerSpec`."""
