"""One module per detector; `maild.classify.chain` runs them in order."""
