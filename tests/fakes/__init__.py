"""Fakes that sit exactly at an I/O seam: loopback servers the code under test talks to over real sockets."""
