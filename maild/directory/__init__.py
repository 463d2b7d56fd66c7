"""The third-party directory: customers, suppliers and prospects, their contacts, addresses, domains and documents."""
