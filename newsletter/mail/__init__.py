"""Building, signing and handing over one message: RFC 5322 bytes, DKIM, transports."""
