"""The example app: numbers factorised in the background."""
