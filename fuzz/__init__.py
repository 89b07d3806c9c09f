"""Coverage-guided fuzz harnesses (atheris) for every parser that sees network bytes.

Each ``fuzz_<name>.py`` module is one harness with a ``test_one_input(data)`` entry point; see
``fuzz/README.md`` for how to run them and ``fuzz/run`` for the campaign runner. Nothing here
imports pyl2tp at package level: a harness must import it inside atheris' instrumentation hook,
which only instruments modules that are not yet loaded.
"""
