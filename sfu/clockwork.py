"""The worker's clockwork: everything it does on a timer rather than per packet.

- RTCP receiver reports for every transport (`sfu.rtcp_interval_s`), transport-wide
  congestion feedback and due keyframe requests (every 100 ms);
- the event loop's lag, probed every 250 ms (a stalled loop is a stalled meeting);
- ICE consent (RFC 7675): every second, transports whose peer's consent lapsed stop sending;
- the routers' dominant-speaker detectors, each deciding when its `next_tick_ms` is due
  (every 200 ms, looked at every 50 ms); a change goes to `on_active_speaker(router id,
  producer id)` (the worker notifies control: `sfu.api.ActiveSpeaker`);
- send-side bandwidth estimation: every 100 ms each subscribe transport may start a
  probe cluster (`sfu.transport.webrtc.WebRtcTransport.tick_bandwidth`); while any
  cluster runs, one loop timer paces them all every 5 ms (`pace_probes`), unarmed
  otherwise;
- adaptive media (every 200 ms, `tick_allocations`): the video producers' bitrate meters
  (sampled every second), each subscribe transport's allocation when it is due
  (`sfu.engine.subscription.Subscription`; what changed goes to `on_allocation(transport
  id, estimate, tracks)`: `sfu.api.SubscriberAllocation`), then dynacast: each simulcast
  producer's wanted layers (a change goes to `on_layers_wanted(producer id, rids)`:
  `sfu.api.ProducerLayersWanted`);
- the notice clock (`sfu.engine.notice_clock.NoticeClock`), wired to one loop timer at its
  next absolute deadline;
- call quality (every `QUALITY_REPORT_S`, `tick_quality`): each WebRTC transport's report
  window (`sfu.engine.quality.LinkQuality.take`) goes to `on_quality(transport, window)`
  (`sfu.api.TransportQuality`) when it had reports.

Each periodic action runs synchronously between packets; one that fails is logged and the
next round runs anyway. Allocation and dynacast are isolated per subscriber and per
producer: one that raises is counted (`failures`) and logged once, the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sfu.engine.bwe.pacer import PACE_INTERVAL_US
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.router import Registry
from sfu.engine.simulcast import SimulcastProducer

log = logging.getLogger("sfu.worker")

KEYFRAME_POLL_S = 0.1
TRANSPORT_FEEDBACK_S = 0.1
LAG_PROBE_S = 0.25
CONSENT_CHECK_S = 1.0
SPEAKER_POLL_S = 0.05  # the detectors decide every 200 ms: at most this late
BANDWIDTH_TICK_S = 0.1
PROBE_PACE_S = PACE_INTERVAL_US / 1e6
ALLOCATION_POLL_S = 0.2  # allocations run when due (at most twice a second on the estimate alone)
METER_INTERVAL_S = 1.0  # the bitrate meters' one-second samples
# Call quality's report window: a few RRs per stream (Chromium sends one about every
# second for video), and control hears each transport at most this often.
QUALITY_REPORT_S = 2.0
MAX_LOGGED_FAILURES = 1000  # objects whose failure was logged (bounded memory)


def _nobody(router_id: str, producer_id: str) -> None:
    pass


def _no_allocation(transport_id: str, estimate_bps: int, tracks: list[dict]) -> None:
    pass


def _no_layers(producer_id: str, rids: list[str]) -> None:
    pass


def _no_quality(transport: object, window: dict) -> None:
    pass


class Clockwork:
    def __init__(
        self,
        registry: Registry,
        notices: NoticeClock,
        rtcp_interval_s: float,
        on_active_speaker: Callable[[str, str], None] = _nobody,
        clock: Callable[[], float] = time.monotonic,
        on_allocation: Callable[[str, int, list[dict]], None] = _no_allocation,
        on_layers_wanted: Callable[[str, list[str]], None] = _no_layers,
        on_quality: Callable[[object, dict], None] = _no_quality,
    ) -> None:
        self._registry = registry
        self.notices = notices
        self._rtcp_interval_s = rtcp_interval_s
        self._on_active_speaker = on_active_speaker
        self._on_allocation = on_allocation
        self._on_layers_wanted = on_layers_wanted
        self._on_quality = on_quality
        self._next_measure = 0.0
        # The producers' clock (sfu.worker gives both time.monotonic): levels and
        # decisions are on one time line, in milliseconds.
        self._clock = clock
        self.loop_lag = 0.0  # seconds the last probe woke up late
        self._tasks: list[asyncio.Task[None]] = []
        self._notice_timer: asyncio.TimerHandle | None = None
        self._probing: list = []  # transports pacing a probe cluster
        self._probe_timer: asyncio.TimerHandle | None = None
        self.failures = 0  # allocations and dynacast updates that raised (each one isolated)
        self._logged_failures: set[tuple[str, str]] = set()

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self._every(self._rtcp_interval_s, self._send_reports)),
            asyncio.ensure_future(self._every(KEYFRAME_POLL_S, self._poll_keyframes)),
            asyncio.ensure_future(self._every(TRANSPORT_FEEDBACK_S, self._send_transport_feedback)),
            asyncio.ensure_future(self._every(CONSENT_CHECK_S, self._check_consent)),
            asyncio.ensure_future(self._every(SPEAKER_POLL_S, self.tick_speakers)),
            asyncio.ensure_future(self._every(BANDWIDTH_TICK_S, self.tick_bandwidth)),
            asyncio.ensure_future(self._every(ALLOCATION_POLL_S, self.tick_allocations)),
            asyncio.ensure_future(self._every(QUALITY_REPORT_S, self.tick_quality)),
            asyncio.ensure_future(self._measure_lag()),
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None

    async def _every(self, interval: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception:
                log.exception("periodic task failed")

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag = max(0.0, loop.time() - start - LAG_PROBE_S)

    def _send_reports(self) -> None:
        for transport in self._registry.transports.values():
            transport.send_receiver_reports()  # type: ignore[attr-defined]

    def _send_transport_feedback(self) -> None:
        for transport in self._registry.transports.values():
            transport.send_transport_feedback()  # type: ignore[attr-defined]

    def _check_consent(self) -> None:
        for transport in list(self._registry.transports.values()):
            transport.check_consent()  # type: ignore[attr-defined]

    def _poll_keyframes(self) -> None:
        for producer in self._registry.producers.values():
            # Deferred requests too: a PLI that came within the interval from a consumer
            # that forwards already (a subscriber's, a pipe's on behalf of another
            # worker's subscribers) waits for no keyframe here, yet must be sent.
            if producer.keyframe_waiters or producer.params.rids or producer.keyframes.pending:
                producer.poll_keyframe_request()

    def tick_speakers(self) -> None:
        """Each router's detector decides if it is due; each change is told once."""
        now_ms = int(self._clock() * 1000)
        for router in self._registry.routers.values():
            producer_id = router.tick_speaker(now_ms)
            if producer_id is not None:
                self._on_active_speaker(router.id, producer_id)

    # ------------------------------------------------------------------ bandwidth

    def tick_bandwidth(self) -> None:
        """Each subscribe transport's estimator may start a probe; pace those that did."""
        now_us = time.monotonic_ns() // 1000  # the transports' send log clock
        probing = []
        for transport in self._registry.transports.values():
            if getattr(transport, "estimator", None) is not None and transport.tick_bandwidth(now_us):  # type: ignore[attr-defined]
                probing.append(transport)
        self._probing = probing
        self._arm_probe_timer()

    def pace_probes(self) -> None:
        """Every PROBE_PACE_S while a cluster runs: send what is due of each."""
        self._probe_timer = None
        now_us = time.monotonic_ns() // 1000
        still = []
        for transport in self._probing:
            try:
                if not transport.closed and transport.pace_probe(now_us):
                    still.append(transport)
            except Exception:
                log.exception("probe pacing failed")
        self._probing = still
        self._arm_probe_timer()

    def _arm_probe_timer(self) -> None:
        if self._probing and self._probe_timer is None:
            self._probe_timer = asyncio.get_running_loop().call_later(PROBE_PACE_S, self.pace_probes)

    # ------------------------------------------------------------------ adaptive media

    def tick_allocations(self) -> None:
        """Meters, then every due allocation (changes told), then dynacast (changes told)."""
        now = self._clock()
        registry = self._registry
        if now >= self._next_measure:
            self._next_measure = now + METER_INTERVAL_S
            for producer in registry.producers.values():
                if producer.is_video:
                    producer.measure(now)
        for transport in list(registry.transports.values()):
            subscription = getattr(transport, "subscription", None)
            if subscription is not None and subscription.due(now):
                try:
                    tracks = subscription.run(now)
                except Exception:  # one subscriber's fault: the others are still allocated
                    self._failed_once(transport.id, "allocation")
                    continue
                if tracks:
                    self._on_allocation(transport.id, subscription.estimate_bps, tracks)
        for producer in list(registry.producers.values()):
            if isinstance(producer, SimulcastProducer):
                try:
                    wanted = producer.demand.update(producer.taken_layers(), now)
                except Exception:
                    self._failed_once(producer.id, "dynacast")
                    continue
                if wanted is not None:
                    self._on_layers_wanted(producer.id, producer.active_rids(wanted))

    # ------------------------------------------------------------------ call quality

    def tick_quality(self) -> None:
        """Every QUALITY_REPORT_S: each judged transport's window, when it had reports."""
        for transport in list(self._registry.transports.values()):
            quality = getattr(transport, "quality", None)
            if quality is None or transport.closed:
                continue
            window = quality.take()
            if window is not None:
                self._on_quality(transport, window)

    def _failed_once(self, object_id: str, what: str) -> None:
        """Counted every time; logged with its traceback once per object (a fault that
        repeats every 200 ms must not flood the log)."""
        self.failures += 1
        if (what, object_id) in self._logged_failures:
            return
        if len(self._logged_failures) < MAX_LOGGED_FAILURES:
            self._logged_failures.add((what, object_id))
        log.exception("%s of %s failed (the others go on)", what, object_id)

    # ------------------------------------------------------------------ notices

    @property
    def notice_timer_armed(self) -> bool:
        return self._notice_timer is not None

    def notices_changed(self) -> None:
        """A play started: (re)arm the one timer at the clock's next deadline (absolute)."""
        if self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None
        due = self.notices.next_due
        if due is not None:
            self._notice_timer = asyncio.get_running_loop().call_at(due, self._on_notice_timer)

    def _on_notice_timer(self) -> None:
        self._notice_timer = None
        for announcer, exc in self.notices.tick(asyncio.get_running_loop().time()):
            log.error("notice play of %s failed; abandoned", announcer.id, exc_info=exc)
        self.notices_changed()
