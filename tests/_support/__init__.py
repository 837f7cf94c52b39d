"""The test harness: real servers, fault proxies and helpers (no tests here)."""
