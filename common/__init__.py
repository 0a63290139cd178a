"""What several processes of Conclave share, owned by none of them.

- `common.messages`: the typed-message base (frozen dataclasses with an ``ENTITY_VERB``
  name, their registry, JSON-able encoding and decoding, `Empty`);
- `common.channel`: the framed channel those messages travel on between control and a
  child process (an SFU worker, the recorder);
- `common.storage`: a customer's storage (a local directory or an S3-compatible bucket):
  write with verification, read, list, delete, and the rules for its settings and keys;
- `common.notices`: the pre-rendered spoken notices, as 20 ms Opus packets.

Import rule: `common` imports the standard library and, in `common.storage.s3` only,
aiobotocore/botocore; never sfu, recorder, control, bench or config. sfu, recorder and
control may import it.
"""
