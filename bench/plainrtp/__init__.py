"""Plain-RTP fan-out, side by side: a bare uvloop relay, Janus and Conclave's own worker.

`python -m bench.plainrtp` (see bench/README.md); `bench.plainrtp.hotpath` and
`bench.plainrtp.profile` break a forwarded packet's CPU down.
"""
