"""flagstaff's tests, laid out like the package (tools/mirror_tests.py)."""
