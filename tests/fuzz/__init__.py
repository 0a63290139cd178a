"""Fuzzing every parser of the project (issue 10): the targets, their seed corpora and the
campaign command.

- `tests.fuzz.targets`: one target per parser. A target takes any bytes and checks the
  property: the parser gives a value or its documented error (ValueError /
  SignalingError / MessageError naming the field), never anything else, and what parses
  survives a round trip through the module's own serializer where one exists. Seeds come
  from the captures in tests/data and from the serializers.
- `tests.fuzz.strategies`: structure-aware Hypothesis strategies (valid packets built by
  the serializers, then mutated) for the unit tier (tests/fuzz/test_targets.py) and for
  the command's Hypothesis engine.
- `python -m tests.fuzz --count 1000000 [--parser rtp ...]`: the long campaign (atheris,
  coverage-guided, when it is installed; else Hypothesis in a loop), one parser at a
  time in a child process bounded in inputs, time, time per input and memory. See
  docs/security-fuzzing.md.

Nothing here imports the parsers at package import: the atheris child must import them
inside its instrumentation block.
"""
