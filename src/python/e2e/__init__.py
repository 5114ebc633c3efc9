"""End-to-end tests of the packaged platform."""
