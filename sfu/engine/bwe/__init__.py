"""Send-side bandwidth estimation for one subscriber transport (issue 11, item 3).

How much can we send this subscriber without building a queue on its path? The worker
numbers every packet it sends on the transport (transport-wide sequence numbers), the
subscriber's browser reports when each arrived (transport-cc feedback), and this package
turns the two into an estimate, a pure state machine fed events and the time:

    send_log.py   SendLog, PacketResult: what we sent, matched against feedback
                  (16-bit sequence and 24-bit reference-time wrap, duplicates, bounds)
    delay.py      PacketGrouper → TrendlineFilter → OveruseDetector: is a queue growing?
    rate.py       AckedBitrate, AimdRateControl (+ LinkCapacity), LossBasedControl
    probe.py      ProbeController (when, how high), ProbeMeasurement (what a probe found)
    estimator.py  BandwidthEstimator: the above combined, the one class the worker uses

The design follows libwebrtc's goog_cc (what Chromium runs as a sender, so a subscriber
browser's feedback behaves as those constants expect); see each module for what is
borrowed and why.
"""

from sfu.engine.bwe.estimator import BandwidthEstimator
from sfu.engine.bwe.probe import ProbeCluster
from sfu.engine.bwe.send_log import PacketResult, SendLog

__all__ = ["BandwidthEstimator", "PacketResult", "ProbeCluster", "SendLog"]
