"""Delivery-failure notices: RFC 3464 reports, RFC 3463 status codes, the formats of the common mail servers."""
