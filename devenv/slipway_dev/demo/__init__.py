"""The whole loop on one machine: the scenario `make demo` plays and the end-to-end test asserts."""
