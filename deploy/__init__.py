"""Deployment definitions (compose file, Maven poms) and their static checks."""
