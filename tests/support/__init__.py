"""Test support shared by the test packages: fakes and fixtures that are not tests."""
