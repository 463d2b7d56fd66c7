"""Matchers: small pure units that tie a message to a third party, each with a confidence and a reason.

`chain.decide()` runs them in the configured order over a `Snapshot` of the directory (loaded once per
batch by `snapshot.load()`), and `stage.match_messages()` records every verdict and the decision.
"""
