"""Application protocols: DNS, HTTP/1.x, HTTP/2, TLS and X.509, found by content and parsed from reassembled flows.

`AppLayer` (app.py) is the entry point the pipeline calls once per chunk; the parsers are plain modules that can be
used on bytes directly (dns.parse_message, tls.parse_client_hello, x509.parse_certificate, ...).
"""
