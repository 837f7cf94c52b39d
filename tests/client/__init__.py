"""Tests of the client side: the client, its follower, overrides, admin, health."""
