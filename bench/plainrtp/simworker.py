"""`python -m bench.plainrtp.simworker`: `sfu.worker` as the simulcast contender runs it.

The same worker (`sfu.worker.main`, its channel, transports, allocation, estimator), with
one difference: each subscriber's bandwidth estimate is bounded to BENCH_BPS from below
and above (the product: 30 kbit/s .. 20 Mbit/s, from 300 kbit/s). The bench saturates the
worker's CPU on loopback (a subscriber of the top layer is sent some 100 Mbit/s), and the
feedback its receivers send cannot tell the worker's own queue from a link's (they read
only the newest packets, see bench/plainrtp/simulcast.py); with the product's bounds
the allocation would move subscribers down or pause them, and the bench would measure
something else than 16 subscribers spread over three layers. Every feedback still goes
through the whole estimator (send log, delay trendline, AIMD, loss control); only its
result is held at BENCH_BPS.
"""

from __future__ import annotations

import sys

from sfu.engine.bwe.estimator import BandwidthEstimator

BENCH_BPS = 10_000_000_000


def lift_estimate_bounds() -> None:
    """Start, floor and ceiling of every BandwidthEstimator made from now on: BENCH_BPS."""
    defaults = BandwidthEstimator.__init__.__defaults__
    assert defaults is not None and len(defaults) == 4  # start_bps, min_bps, max_bps, log_capacity
    BandwidthEstimator.__init__.__defaults__ = (BENCH_BPS, BENCH_BPS, BENCH_BPS, defaults[3])


if __name__ == "__main__":
    lift_estimate_bounds()
    from sfu.worker import main

    sys.exit(main())
