"""The documented Python API of taskjobs."""
