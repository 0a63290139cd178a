"""Send-side bandwidth estimation for one subscriber transport (issue 11, item 3).

    send_log.py   SendLog, PacketResult: what we sent, matched against feedback
                  (16-bit sequence and 24-bit reference-time wrap, duplicates, bounds)
    delay.py      PacketGrouper → TrendlineFilter → OveruseDetector: is a queue growing?
                  QueueDelay: how much queue stands?
    rate.py       AckedBitrate, AimdRateControl (+ LinkCapacity), LossBasedControl
    probe.py      ProbeController (when, how high), ProbeMeasurement (what a probe found)
"""
